<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Servers tab: every server's sync state, "Sync This Server", and per-client power and update actions.
 * Actions go to the admin API (AdminApi) in the web user's name with a reason; their status is read from it.
 * The admin API is the live server's (Config::live()): other servers' rows show their actions disabled, saying why.
 */
final class ServersPage
{
    public const MAX_REASON = 500;
    /** the longest auto-sync period, in minutes (a week; the sync worker's own limit) */
    public const AUTO_MAX_MIN = 10080;

    public function __construct(private readonly PDO $db, private readonly Auth $auth, private readonly ?Config $config = null)
    {
    }

    public function show(): void
    {
        $servers = ServersQuery::servers($this->db);
        $ids = array_column($servers, 'server_id');
        $wanted = is_string($_GET['server'] ?? null) ? $_GET['server'] : '';
        $server = in_array($wanted, $ids, true) ? $wanted : ($ids[0] ?? '');
        $page = max(1, min(1000000, (int) (is_string($_GET['page'] ?? null) ? $_GET['page'] : 1)));
        $client = ListParams::text($_GET, 'client', 128);  // a client's row menu on the Clients tab: its page, marked
        if ($client !== '' && $server === $wanted && !isset($_GET['page'])) {
            $page = ServersQuery::pageOf($this->db, $server, $client) ?? $page;
        }
        [$clients, $total] = $server === '' ? [[], 0] : ServersQuery::clients($this->db, $server, $page);
        $user = $this->auth->user();
        View::page('servers', ['title' => 'Servers', 'tab' => 'servers', 'user' => $user, 'servers' => $servers,
            'server' => $server, 'client' => $client, 'clients' => $clients, 'total' => $total, 'page' => $page,
            'pages' => max(1, (int) ceil($total / ServersQuery::PER_PAGE)), 'canAct' => Auth::allows($user, 'operator'),
            'apiOn' => AdminApi::fromConfig(Config::fromEnv()) !== null, 'actions' => AdminApi::ACTIONS,
            'webKeyId' => (new Sealed(Config::fromEnv()->webKeyPath()))->keyId(),
            'canSetAuto' => Auth::allows($user, 'admin'), 'autoMax' => self::AUTO_MAX_MIN,
            'whyNot' => fn (string $id): ?string => Bridge::whyNot($this->config, $id)]);
    }

    /** GET /servers/state: every server's last sync and state as JSON (the page polls it while a sync runs). */
    public function state(): void
    {
        $servers = array_map(static fn (array $s): array => ['server_id' => $s['server_id'], 'state' => $s['state'],
            'last_sync' => (float) $s['last_sync'], 'rows_synced' => (int) $s['rows_synced']], ServersQuery::servers($this->db));
        View::json(['servers' => $servers]);
    }

    /** POST /servers/sync (reason, server): the admin API's POST /api/sync in the web user's name. */
    public function sync(): void
    {
        $reason = $this->reason();
        if ($reason === null || !$this->ours()) {
            return;
        }
        [$status, $answer] = $this->api('POST', '/api/sync', ['reason' => $reason]);
        if ($status !== 0) {
            View::json($status < 300 ? ['started' => true, 'already_running' => !empty($answer['already_running'])]
                : self::refusal($answer), $status < 300 ? 202 : 502);
        }
    }

    /** POST /servers/action (client, action, reason, server): reboot, shutdown, update check or apply through the admin API. */
    public function act(): void
    {
        $action = AuthPages::posted('action');
        $client = AuthPages::posted('client');
        if (!array_key_exists($action, AdminApi::ACTIONS) || $client === '' || strlen($client) > 200) {
            View::json(['error' => 'Unknown action or client.'], 400);
            return;
        }
        $reason = $this->reason();
        if ($reason === null || !$this->ours()) {
            return;
        }
        [$status, $answer] = $this->api('POST', '/api/clients/' . rawurlencode($client) . '/' . $action, ['reason' => $reason]);
        if ($status !== 0) {
            View::json($status < 300 ? CommandView::of($answer) : self::refusal($answer), $status < 300 ? 202 : 502);
        }
    }

    /** GET /servers/command?id=: one command's status and readable result, from the admin API (reads only). */
    public function command(): void
    {
        $id = is_string($_GET['id'] ?? null) ? $_GET['id'] : '';
        if (!preg_match('/^[A-Za-z0-9_-]{1,64}$/', $id)) {
            View::json(['error' => 'A command id is 1-64 letters, digits, - and _.'], 400);
            return;
        }
        [$status, $answer] = $this->api('GET', '/api/commands/' . $id, null);
        if ($status !== 0) {
            View::json($status === 200 ? CommandView::of($answer) : self::refusal($answer), $status === 200 ? 200 : 502);
        }
    }

    /** GET /servers/auto: the sync worker's auto-sync setting as it runs now ({enabled, every_s, next_in_s}), read back from it. */
    public function auto(): void
    {
        [$status, $answer] = $this->api('GET', '/api/sync', null);
        if ($status !== 0) {
            $ok = $status === 200 && is_array($answer['auto'] ?? null);
            View::json($ok ? self::autoView($answer['auto']) : self::refusal($answer), $ok ? 200 : 502);
        }
    }

    /** POST /servers/auto (enabled 1|0, every_min 1-10080, reason): admins only; answers the setting read back from the worker. */
    public function setAuto(): void
    {
        $enabled = AuthPages::posted('enabled');
        $minutes = trim(AuthPages::posted('every_min'));
        if (!in_array($enabled, ['0', '1'], true) || !preg_match('/^[0-9]{1,5}$/', $minutes) || (int) $minutes < 1
            || (int) $minutes > self::AUTO_MAX_MIN) {
            View::json(['error' => 'Auto-sync is on (1) or off (0), every 1 to ' . self::AUTO_MAX_MIN
                . ' minutes (a whole number); nothing was changed.'], 422);
            return;
        }
        $reason = $this->reason();
        if ($reason === null) {
            return;
        }
        $setting = ['enabled' => $enabled === '1', 'every_s' => 60 * (int) $minutes];
        [$status, $answer] = $this->api('POST', '/api/sync/auto', ['reason' => $reason, 'args' => $setting]);
        if ($status !== 0) {
            $ok = $status === 200 && is_array($answer['auto'] ?? null);
            View::json($ok ? self::autoView($answer['auto']) : self::refusal($answer), $ok ? 200 : 502);
        }
    }

    private static function autoView(array $auto): array
    {
        $next = $auto['next_in_s'] ?? null;
        return ['enabled' => !empty($auto['enabled']), 'every_min' => round((float) ($auto['every_s'] ?? 0) / 60, 2),
            'next_in_min' => is_numeric($next) ? round((float) $next / 60, 1) : null];
    }

    /** The posted reason, or null after answering 422 (a reason is mandatory). */
    private function reason(): ?string
    {
        $reason = trim(AuthPages::posted('reason'));
        if ($reason === '' || iconv_strlen($reason) === false || iconv_strlen($reason) > self::MAX_REASON) {
            View::json(['error' => 'A reason (1-' . self::MAX_REASON . ' characters) is required: the user is shown it and the audit trail keeps it.'], 422);
            return null;
        }
        return $reason;
    }

    /** Whether the posted server is the one this web UI's admin API acts on; else false after answering 409. */
    private function ours(): bool
    {
        $why = Bridge::whyNot($this->config, AuthPages::posted('server'));
        if ($why !== null) {
            View::json(['error' => $why], 409);
        }
        return $why === null;
    }

    /** [status, answer] from the admin API; [0, ...] after answering 503 when it is off or unreachable. */
    private function api(string $method, string $path, ?array $body): array
    {
        $api = AdminApi::fromConfig(Config::fromEnv());
        [$status, $answer] = $api === null ? [0, ['error' => 'The admin API is off: `ems up` starts it when EMS_ADMIN_TOKEN is set.']]
            : $api->call($method, $path, $body, (array) $this->auth->user());
        if ($status === 0) {
            View::json(['error' => (string) ($answer['error'] ?? 'the admin API did not answer')], 503);
        }
        return [$status, $answer];
    }

    private static function refusal(array $answer): array
    {
        $error = (string) ($answer['error'] ?? 'refused');
        $hint = (string) ($answer['hint'] ?? '');
        return ['error' => 'The admin API refused: ' . $error . ($hint !== '' ? ' (' . $hint . ')' : '')];
    }
}
