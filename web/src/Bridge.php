<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * The web's way to pictures on the live server: the bridges (bridges/get_latest_frame.py, bridges/get_capture.py),
 * each run as `python -m MODULE ...` with proc_open from an argv array (never a shell string), for the web user
 * (--operator: the display name the employee is shown, --operator-id: web:USERNAME for the audit trail) with the
 * reason they gave, against the data dir and deadline of the configuration's "live" section (Config::live()).
 * A bridge's exit code (bridges/bridge_call.py Exit) becomes a message for the person (MESSAGES).
 */
final class Bridge
{
    /** bridges.bridge_call.Exit code => [HTTP status, what the person is told] */
    public const MESSAGES = [
        1 => [502, 'The server could not do it (see the detail below).'],
        2 => [422, 'The server refused the request as malformed (see the detail below).'],
        3 => [503, 'The EMS server is not running: its broker does not answer at the configured address.'],
        4 => [504, 'No answer in time: the computer or the server did not respond before the deadline.'],
        5 => [403, 'Not allowed: the server or the computer refused this (its own policy, or the web bridge is not registered).'],
        6 => [409, 'The computer is offline: it can show its screen once it is connected again.'],
        7 => [404, 'The server does not know this computer (its key is not accepted there).'],
        8 => [409, 'This computer has no screen to show (no display is running on it).'],
        9 => [503, 'The web UI cannot reach its server: the bridge keys or the profile are missing (run `ems up`).'],
        10 => [404, 'This picture is no longer in the server\'s store (purged by retention?).'],
    ];
    /** what a bridge may print on stdout (a 4K JPEG is well below) */
    private const MAX_OUTPUT_BYTES = 32 * 1024 * 1024;
    /** the bridge ends itself 2 s after its deadline (bridge_call.ALARM_SLACK_S); this is PHP's own limit beyond that */
    private const KILL_AFTER_S = 5.0;
    private const DEFAULT_MAX_REASON = 500;

    private function __construct(private readonly array $live)
    {
    }

    public const NOT_SET_UP = 'This web UI cannot run the bridges of its server (no python or data dir in its configuration: run `ems up`).';

    /** The bridges of the configured live server, or null when this web UI has none or cannot run them. */
    public static function fromConfig(?Config $config): ?self
    {
        $live = $config?->live();
        return $live === null || empty($live['python']) || empty($live['data_dir']) ? null : new self($live);
    }

    /** The longest reason a bridge takes (the bus's limit, written into the configuration by `ems up`). */
    public static function maxReason(?Config $config): int
    {
        return (int) ($config?->live()['max_reason_chars'] ?? self::DEFAULT_MAX_REASON);
    }

    /** The server id whose clients this web UI acts on ('' when none). */
    public static function serverId(?Config $config): string
    {
        return (string) ($config?->live()['server_id'] ?? '');
    }

    /** Why the web UI cannot act on $serverId's clients, or null when it can. */
    public static function whyNot(?Config $config, string $serverId): ?string
    {
        $live = self::serverId($config);
        if ($live === '') {
            return 'This web UI is not connected to a live EMS server (`ems up` configures it).';
        }
        return $serverId === $live ? null
            : 'This computer belongs to another EMS server: open the web UI of that server to act on it.';
    }

    /** The posted reason cleaned up (one line), or null when it is empty or too long. */
    public static function reason(string $posted, int $max): ?string
    {
        $reason = trim((string) preg_replace('/\s+/u', ' ', $posted));
        $length = iconv_strlen($reason, 'UTF-8');
        return $reason === '' || $length === false || $length > $max ? null : $reason;
    }

    /** The person's message for an exit code (unknown codes and signals read as a failure). */
    public static function message(int $code): array
    {
        return self::MESSAGES[$code] ?? self::MESSAGES[1];
    }

    /**
     * Run bridge $name (a key of the configuration's "bridges") with $options and then $positional (after `--`:
     * a client id starting with '-' stays an argument) for $user and $reason: [exit code, stdout bytes, stderr text].
     */
    public function run(string $name, array $options, array $positional, array $user, string $reason): array
    {
        $module = (string) ($this->live['bridges'][$name] ?? '');
        if (!preg_match('/^[A-Za-z_][A-Za-z0-9_.]*$/', $module)) {
            return [9, '', 'the web configuration names no bridge ' . $name];
        }
        $timeout = (float) ($this->live['timeout_s'] ?? 10);
        $argv = [(string) $this->live['python'], '-m', $module, ...$options,
            '--operator=' . self::person($user), '--operator-id=web:' . $user['username'], '--reason=' . $reason,
            '--data-dir=' . $this->live['data_dir'], '--timeout-s=' . $timeout, '--', ...$positional];
        $env = ['PATH' => getenv('PATH') ?: '/usr/bin:/bin', 'LANG' => 'C.UTF-8',
            'PYTHONPATH' => (string) ($this->live['pythonpath'] ?? '')];
        $process = proc_open($argv, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env);
        if (!is_resource($process)) {
            return [1, '', 'the bridge could not be started'];
        }
        [$out, $err, $finished] = self::collect($pipes, microtime(true) + $timeout + self::KILL_AFTER_S);
        if (!$finished) {
            proc_terminate($process, 9);
        }
        $code = proc_close($process);
        return $finished ? [$code < 0 ? 1 : $code, $out, trim($err)] : [4, '', 'the bridge outlived its deadline and was stopped'];
    }

    /** Answer a failed bridge: JSON {error, detail} with the status its exit code maps to. */
    public static function refuse(int $code, string $detail): void
    {
        [$status, $message] = self::message($code);
        View::json(['error' => $message, 'detail' => $detail, 'code' => $code], $status);
    }

    /** Answer a JPEG (never cached: it is a picture of someone's screen). */
    public static function sendJpeg(string $jpeg): void
    {
        http_response_code(200);
        header('Content-Type: image/jpeg');
        header('Cache-Control: no-store, private');
        header('Content-Length: ' . strlen($jpeg));
        echo $jpeg;
    }

    /** Whether $bytes look like a JPEG (its start-of-image marker). */
    public static function isJpeg(string $bytes): bool
    {
        return strncmp($bytes, "\xFF\xD8\xFF", 3) === 0;
    }

    /** The display name the employee is shown (the user name when there is none). */
    public static function person(array $user): string
    {
        $name = trim((string) preg_replace('/\s+/u', ' ', (string) $user['display_name']));
        return $name !== '' && iconv_strlen($name, 'UTF-8') <= 100 ? $name : (string) $user['username'];
    }

    /** Read both pipes until they close or $until: [stdout, stderr, whether both closed in time]. */
    private static function collect(array $pipes, float $until): array
    {
        $open = [1 => $pipes[1], 2 => $pipes[2]];
        $text = [1 => '', 2 => ''];
        foreach ($open as $pipe) {
            stream_set_blocking($pipe, false);
        }
        while ($open && microtime(true) < $until) {
            $read = array_values($open);
            $write = $except = null;
            if (stream_select($read, $write, $except, 0, 200000) === false) {
                break;
            }
            foreach ($open as $i => $pipe) {
                $chunk = fread($pipe, 1 << 16);
                $text[$i] .= $chunk === false ? '' : $chunk;
                if (feof($pipe) || strlen($text[$i]) > self::MAX_OUTPUT_BYTES) {
                    fclose($pipe);
                    unset($open[$i]);
                }
            }
        }
        foreach ($open as $pipe) {
            fclose($pipe);
        }
        return [$text[1], $text[2], !$open];
    }
}
