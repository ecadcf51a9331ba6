<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * Failed logins (table web_login_attempts, one row per failure and kind) counted over WINDOW_S; too many -> refused.
 *
 * Three counts, so that knowing an account's name is not enough to lock its owner out:
 *  - 'pair' (address + account): the usual brute force, PER_PAIR guesses at one account from one address;
 *  - 'ip' (address): one address guessing many names, PER_ADDRESS failures in all;
 *  - 'user' (account, from every address): a ceiling far higher, PER_ACCOUNT, against a guess spread over many
 *    addresses. Only this one can lock the owner out everywhere, and only an attacker with many addresses reaches it.
 * A success clears its own pair only. The limits can be lowered or raised in the config ("login_throttle").
 */
final class Throttle
{
    public const WINDOW_S = 900;
    public const LIMITS = ['per_pair' => 5, 'per_address' => 20, 'per_account' => 100];

    private readonly array $limits;

    public function __construct(private readonly PDO $db, array $limits = [])
    {
        $this->limits = array_merge(self::LIMITS, array_map('intval', array_intersect_key($limits, self::LIMITS)));
    }

    /** Whether a login for $username from $address must be refused without checking the password. */
    public function blocked(string $username, string $address): bool
    {
        return $this->failures('pair', self::pair($username, $address)) >= $this->limits['per_pair']
            || $this->failures('ip', $address) >= $this->limits['per_address']
            || $this->failures('user', $username) >= $this->limits['per_account'];
    }

    public function recordFailure(string $username, string $address): void
    {
        $now = microtime(true);
        $this->db->prepare('DELETE FROM web_login_attempts WHERE ts < :old')->execute([':old' => $now - self::WINDOW_S]);
        $insert = $this->db->prepare('INSERT INTO web_login_attempts (kind, subject, ts) VALUES (:kind, :subject, :ts)');
        foreach (['pair' => self::pair($username, $address), 'ip' => $address, 'user' => $username] as $kind => $subject) {
            $insert->execute([':kind' => $kind, ':subject' => $subject, ':ts' => $now]);
        }
    }

    /** After a good password: this address's failures at this account are forgotten (the others stay). */
    public function clearPair(string $username, string $address): void
    {
        $this->db->prepare("DELETE FROM web_login_attempts WHERE kind = 'pair' AND subject = :subject")
            ->execute([':subject' => self::pair($username, $address)]);
    }

    /** The address first (it has no spaces), so no two (account, address) pairs share a subject. */
    private static function pair(string $username, string $address): string
    {
        return $address . ' ' . $username;
    }

    private function failures(string $kind, string $subject): int
    {
        $count = $this->db->prepare('SELECT COUNT(*) FROM web_login_attempts WHERE kind = :kind AND subject = :subject AND ts >= :since');
        $count->execute([':kind' => $kind, ':subject' => $subject, ':since' => microtime(true) - self::WINDOW_S]);
        return (int) $count->fetchColumn();
    }
}
