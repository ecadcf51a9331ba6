<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * Who is logged in: a session whose hash has a live row in web_sessions for an enabled web_users row.
 * Roles (weakest first) are checked on the server for every route.
 */
final class Auth
{
    public const ROLES = ['viewer' => 1, 'operator' => 2, 'admin' => 3];

    /** a hash of a random password nobody knows: verified when the name is unknown */
    private const DUMMY_HASH = '$argon2id$v=19$m=65536,t=4,p=1$aWIuM0Y5U0syV05aSUhGUg$z7mUAL4tL5yig9JqWtS9niGPNL/jdtVpkhf7lahk/So';

    private ?array $user = null;

    public function __construct(private readonly PDO $db, private readonly Config $config)
    {
    }

    /** The logged-in user (id, username, display_name, role) or null. */
    public function user(): ?array
    {
        if ($this->user === null && isset($_SESSION['uid'])) {
            $find = $this->db->prepare(
                'SELECT u.id, u.username, u.display_name, u.role FROM web_sessions s JOIN web_users u ON u.id = s.user_id
                 WHERE s.id = :sid AND s.user_id = :uid AND s.expires > :now AND u.disabled = 0'
            );
            $find->execute([':sid' => Session::idHash(), ':uid' => (int) $_SESSION['uid'], ':now' => microtime(true)]);
            $this->user = $find->fetch() ?: null;
        }
        return $this->user;
    }

    public static function allows(?array $user, string $role): bool
    {
        return $user !== null && (self::ROLES[$user['role']] ?? 0) >= self::ROLES[$role];
    }

    /** Check a password; on success rotate the session id and record the new session. 'ok'|'bad'|'throttled'. */
    public function login(string $username, string $password, string $address): string
    {
        $throttle = new Throttle($this->db, $this->config->loginThrottle());
        if ($throttle->blocked($username, $address)) {
            return 'throttled';
        }
        $find = $this->db->prepare('SELECT id, password_hash FROM web_users WHERE username = :name AND disabled = 0');
        $find->execute([':name' => $username]);
        $row = $find->fetch();
        // an unknown name costs the same as a wrong password
        $hash = $row['password_hash'] ?? self::DUMMY_HASH;
        if (!password_verify($password, $hash) || !$row) {
            $throttle->recordFailure($username, $address);
            return 'bad';
        }
        $throttle->clearPair($username, $address);
        $this->forgetSession();
        Session::rotate();
        $_SESSION['uid'] = (int) $row['id'];
        $now = microtime(true);
        $this->db->prepare('INSERT INTO web_sessions (id, user_id, csrf_token, created, expires) VALUES (:id, :uid, :csrf, :now, :expires)')
            ->execute([':id' => Session::idHash(), ':uid' => (int) $row['id'], ':csrf' => hash('sha256', Session::csrfToken()),
                ':now' => $now, ':expires' => $now + $this->config->sessionLifetime()]);
        $this->user = null;
        return 'ok';
    }

    public function logout(): void
    {
        $this->forgetSession();
        $_SESSION = [];
        Session::rotate();
        $this->user = null;
    }

    private function forgetSession(): void
    {
        $this->db->prepare('DELETE FROM web_sessions WHERE id = :id OR expires < :now')
            ->execute([':id' => Session::idHash(), ':now' => microtime(true)]);
    }
}
