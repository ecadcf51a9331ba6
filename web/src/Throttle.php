<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** Failed logins counted per account and per address (table web_login_attempts); too many -> refused. */
final class Throttle
{
    public const WINDOW_S = 900;
    public const PER_USER = 5;
    public const PER_ADDRESS = 20;

    public function __construct(private readonly PDO $db)
    {
    }

    /** Whether a login for $username from $address must be refused without checking the password. */
    public function blocked(string $username, string $address): bool
    {
        return $this->failures('user', $username) >= self::PER_USER
            || $this->failures('ip', $address) >= self::PER_ADDRESS;
    }

    public function recordFailure(string $username, string $address): void
    {
        $now = microtime(true);
        $this->db->prepare('DELETE FROM web_login_attempts WHERE ts < :old')->execute([':old' => $now - self::WINDOW_S]);
        $insert = $this->db->prepare('INSERT INTO web_login_attempts (kind, subject, ts) VALUES (:kind, :subject, :ts)');
        $insert->execute([':kind' => 'user', ':subject' => $username, ':ts' => $now]);
        $insert->execute([':kind' => 'ip', ':subject' => $address, ':ts' => $now]);
    }

    public function clearUser(string $username): void
    {
        $this->db->prepare("DELETE FROM web_login_attempts WHERE kind = 'user' AND subject = :subject")
            ->execute([':subject' => $username]);
    }

    private function failures(string $kind, string $subject): int
    {
        $count = $this->db->prepare('SELECT COUNT(*) FROM web_login_attempts WHERE kind = :kind AND subject = :subject AND ts >= :since');
        $count->execute([':kind' => $kind, ':subject' => $subject, ':since' => microtime(true) - self::WINDOW_S]);
        return (int) $count->fetchColumn();
    }
}
