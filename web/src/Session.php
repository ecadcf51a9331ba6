<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * The PHP session: strict ids, HttpOnly + SameSite=Strict cookies (+Secure behind HTTPS), a CSRF
 * token per session, and the id rotated (the old one destroyed) whenever the user changes.
 */
final class Session
{
    public const COOKIE = 'ems_web';

    public static function start(Config $config): void
    {
        $dir = $config->sessionDir();
        if ($dir !== null) {
            if (!is_dir($dir)) {
                mkdir($dir, 0700, true);
            }
            session_save_path($dir);
        }
        session_name(self::COOKIE);
        session_set_cookie_params([
            'lifetime' => 0,
            'path' => '/',
            'secure' => self::isHttps(),
            'httponly' => true,
            'samesite' => 'Strict',
        ]);
        session_start([
            'use_strict_mode' => 1,
            'use_only_cookies' => 1,
            'use_trans_sid' => 0,
            'gc_maxlifetime' => $config->sessionLifetime(),
            'gc_probability' => 1,  // Debian's php.ini leaves it to a cron job that never sees this directory
            'gc_divisor' => 100,
        ]);
        if (empty($_SESSION['csrf'])) {
            $_SESSION['csrf'] = bin2hex(random_bytes(32));
        }
    }

    public static function isHttps(): bool
    {
        return (!empty($_SERVER['HTTPS']) && $_SERVER['HTTPS'] !== 'off')
            || (($_SERVER['REQUEST_SCHEME'] ?? '') === 'https');
    }

    public static function csrfToken(): string
    {
        return (string) $_SESSION['csrf'];
    }

    /** Whether this POST carries the session's CSRF token (form field or X-CSRF-Token header). */
    public static function csrfValid(): bool
    {
        $sent = $_POST['csrf'] ?? ($_SERVER['HTTP_X_CSRF_TOKEN'] ?? '');
        return is_string($sent) && $sent !== '' && hash_equals(self::csrfToken(), $sent);
    }

    /** A new session id (the old session destroyed) and a new CSRF token: at login and logout. */
    public static function rotate(): void
    {
        session_regenerate_id(true);
        $_SESSION['csrf'] = bin2hex(random_bytes(32));
    }

    /** The hash under which web_sessions knows this session (never the id itself). */
    public static function idHash(): string
    {
        return hash('sha256', session_id());
    }
}
