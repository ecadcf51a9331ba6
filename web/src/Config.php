<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * The web UI's configuration: a JSON file outside the document root, named by $EMS_WEB_CONFIG
 * (`ems up` writes it into DATA/web/, 0600): MySQL parts, the admin API, the session directory, the live server.
 */
final class Config
{
    public const ENV = 'EMS_WEB_CONFIG';

    private function __construct(private readonly array $values)
    {
    }

    public static function fromEnv(): self
    {
        $path = getenv(self::ENV);
        if ($path === false || $path === '') {
            throw new \RuntimeException(self::ENV . ' is not set: start the web UI with `ems up`');
        }
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new \RuntimeException('cannot read the web configuration ' . $path);
        }
        $values = json_decode($text, true, 16, JSON_THROW_ON_ERROR);
        if (!is_array($values) || !is_array($values['mysql'] ?? null)) {
            throw new \RuntimeException('the web configuration has no "mysql" section');
        }
        return new self($values);
    }

    /** The MySQL connection parts (host, port, unix_socket, user, password, database). */
    public function mysql(): array
    {
        return $this->values['mysql'];
    }

    /** Where PHP keeps session files (private to the server's user). */
    public function sessionDir(): ?string
    {
        return $this->values['session_dir'] ?? null;
    }

    /** The admin HTTP API's base URL and token, or null when it is off. */
    public function adminApi(): ?array
    {
        $api = $this->values['admin_api'] ?? null;
        return is_array($api) && !empty($api['url']) ? $api : null;
    }

    /** The web key that opens sealed fields (DATA/web/web.key), or null when not configured. */
    public function webKeyPath(): ?string
    {
        $path = $this->values['web_key'] ?? null;
        return is_string($path) && $path !== '' ? $path : null;
    }

    /** Overrides of Throttle::LIMITS (per_pair, per_address, per_account), or none. */
    public function loginThrottle(): array
    {
        $limits = $this->values['login_throttle'] ?? null;
        return is_array($limits) ? $limits : [];
    }

    /**
     * The live server this web UI acts on (server_id) and how to run its bridges (python, pythonpath, data_dir,
     * timeout_s, max_reason_chars, bridges: name => module), or null when there is none (Bridge).
     */
    public function live(): ?array
    {
        $live = $this->values['live'] ?? null;
        return is_array($live) && is_string($live['server_id'] ?? null) && $live['server_id'] !== '' ? $live : null;
    }

    public function sessionLifetime(): int
    {
        return (int) ($this->values['session_lifetime_s'] ?? 8 * 3600);
    }
}
