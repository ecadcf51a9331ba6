<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Updates tab: select clients across servers, check them all for OS updates (one update check each through
 * the admin API, one reason), read the pending updates per client, then apply them in waves (a first small wave,
 * then the rest N at a time, stopping after a wave with too many failures). Viewers may look; operators act.
 * A batch's state lives in web_update_batches/_targets and moves only by POST /updates/step (see Rollout).
 */
final class UpdatesPage
{
    public const ACTIONS = ['update-check' => 'Update check', 'update-apply' => 'Update rollout'];

    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function show(): void
    {
        $query = UpdatesQuery::fromParams($_GET);
        [$rows, $total] = $query->page($this->db);
        $user = $this->auth->user();
        View::page('updates', ['title' => 'Updates', 'tab' => 'updates', 'user' => $user, 'query' => $query, 'rows' => $rows,
            'total' => $total, 'pages' => max(1, (int) ceil($total / UpdatesQuery::PER_PAGE)),
            'servers' => ServersQuery::servers($this->db), 'recent' => UpdatesQuery::recent($this->db),
            'canAct' => Auth::allows($user, 'operator') && $this->api() !== null, 'max' => UpdatesQuery::MAX_TARGETS]);
    }

    /** GET /updates/run?id=: one check or rollout, its progress and its clients. */
    public function run(): void
    {
        $batch = $this->batchOr404($_GET['id'] ?? null, 'page');
        if ($batch === null) {
            return;
        }
        $user = $this->auth->user();
        View::page('update_run', ['title' => self::ACTIONS[$batch['action']] ?? 'Updates', 'tab' => 'updates', 'user' => $user,
            'batch' => $batch, 'view' => $this->view($batch), 'canAct' => Auth::allows($user, 'operator') && $this->api() !== null,
            'max' => UpdatesQuery::MAX_TARGETS]);
    }

    /** GET /updates/state?id=: the batch as JSON (a viewer's page polls this; it changes nothing). */
    public function state(): void
    {
        $batch = $this->batchOr404($_GET['id'] ?? null, 'json');
        if ($batch !== null) {
            View::json($this->view($batch));
        }
    }

    /** POST /updates/step (id): advance the batch one step (idempotent; a second page at once only reads). */
    public function step(): void
    {
        $batch = $this->batchOr404($_POST['id'] ?? null, 'json');
        if ($batch === null) {
            return;
        }
        $api = $this->api();
        if ($api === null) {
            View::json(['error' => 'The admin API is off: `ems up` starts it when EMS_ADMIN_TOKEN is set.'], 503);
            return;
        }
        // every command names the person who started the batch and gave its reason, whichever operator's page steps it
        $starter = UpdatesQuery::starter($this->db, (int) $batch['user_id']);
        if ($starter === null && $batch['state'] === 'running') {
            View::json(['error' => 'The account that started this is disabled or gone: it cannot go on in that name. Start a new one.'], 409);
            return;
        }
        $stepped = $batch['state'] === 'running' && (new Rollout($this->db, $api, (array) $starter))->step((int) $batch['id']);
        View::json(['stepped' => $stepped] + $this->view((array) UpdatesQuery::batch($this->db, (int) $batch['id'])));
    }

    /** POST /updates/check (pick[] or all + server + q, reason): an update check on every selected client. */
    public function check(): void
    {
        $reason = $this->reason();
        if ($reason === null) {
            return;
        }
        if (($_POST['all'] ?? '') === '1') {
            $clients = UpdatesQuery::fromParams($_POST)->all($this->db);
        } else {
            $pairs = $this->picked();
            if ($pairs === null) {
                return;
            }
            [$clients, $unknown] = UpdatesQuery::named($this->db, $pairs);
            if ($unknown) {
                $this->refuse(400, 'Unknown client' . (count($unknown) === 1 ? '' : 's') . ': ' . implode(', ', array_slice($unknown, 0, 5))
                    . (count($unknown) > 5 ? ' …' : '') . '. Nothing was started.');
                return;
            }
        }
        if (!$this->sizeOk(count($clients))) {
            return;
        }
        $count = count($clients);
        $this->start(['update-check', $count, $count, $count + 1, null], $reason, $clients);
    }

    /** POST /updates/apply (batch, first, size, stop, skip_failed, reason): a rollout in waves of a finished check's clients. */
    public function apply(): void
    {
        $check = $this->batchOr404($_POST['batch'] ?? null, 'page');
        if ($check === null) {
            return;
        }
        if ($check['action'] !== 'update-check' || $check['state'] === 'running') {
            $this->refuse(409, 'A rollout starts from a finished update check (this one is ' . $check['state'] . '). Nothing was started.');
            return;
        }
        $first = $this->whole('first', 'The first wave');
        $size = $first === null ? null : $this->whole('size', 'The later waves\' size');
        $stop = $size === null ? null : $this->whole('stop', 'The failures that stop the rollout');
        $reason = $stop === null ? null : $this->reason();
        if ($reason === null) {
            return;
        }
        $clients = UpdatesQuery::targets($this->db, (int) $check['id'], 1);
        if (($_POST['skip_failed'] ?? '') === '1') {
            $clients = array_values(array_filter($clients, static fn (array $t): bool => !in_array($t['status'], Rollout::FAILURES, true)));
        }
        if ($this->sizeOk(count($clients))) {
            $this->start(['update-apply', $first, $size, $stop, (int) $check['id']], $reason, $clients);
        }
    }

    private function start(array $plan, string $reason, array $clients): void
    {
        if ($this->api() === null) {
            $this->refuse(503, 'The admin API is off (`ems up` starts it when EMS_ADMIN_TOKEN is set): nothing was started.');
            return;
        }
        $user = (array) $this->auth->user();
        $id = UpdatesQuery::create($this->db, $user, AdminApi::operatorName($user), $reason, $plan, $clients);
        App::redirect('/updates/run?id=' . $id);
    }

    /** What the page shows of a batch: its state, counts and (the first MAX_LISTED) targets. */
    private function view(array $batch): array
    {
        $id = (int) $batch['id'];
        $counts = UpdatesQuery::counts($this->db, $id);
        $final = array_sum(array_intersect_key($counts, array_flip(Rollout::FINAL)));
        $targets = array_map(static fn (array $t): array => [
            'position' => (int) $t['position'], 'host' => $t['hostname'], 'client' => $t['client_id'], 'server' => $t['server_id'],
            'wave' => (int) $t['wave'], 'status' => $t['status'], 'summary' => (string) $t['summary'], 'dry_run' => (bool) $t['dry_run'],
            'update_count' => $t['update_count'] === null ? null : (int) $t['update_count'],
            'updates' => json_decode((string) ($t['updates'] ?? '[]'), true) ?: []], UpdatesQuery::targets($this->db, $id));
        return ['id' => $id, 'action' => $batch['action'], 'state' => $batch['state'], 'note' => (string) $batch['note'],
            'waves' => (int) $batch['waves'], 'current_wave' => (int) $batch['current_wave'], 'total' => array_sum($counts),
            'final' => $final, 'failures' => array_sum(array_intersect_key($counts, array_flip(Rollout::FAILURES))),
            'counts' => $counts, 'targets' => $targets];
    }

    /** The batch a parameter names, or null after answering 400/404 (as a page or as JSON). */
    private function batchOr404(mixed $raw, string $as): ?array
    {
        $id = is_string($raw) && preg_match('/^[1-9][0-9]{0,17}$/', $raw) ? (int) $raw : 0;
        $batch = $id > 0 ? UpdatesQuery::batch($this->db, $id) : null;
        if ($batch === null) {
            $message = $id > 0 ? 'No such update check or rollout.' : 'An update check or rollout id is a whole number.';
            $as === 'json' ? View::json(['error' => $message], $id > 0 ? 404 : 400) : $this->refuse($id > 0 ? 404 : 400, $message);
        }
        return $batch;
    }

    /** The posted pick[] values ("server/client", each part URL-encoded) as pairs; null after answering 400. */
    private function picked(): ?array
    {
        $raw = $_POST['pick'] ?? [];
        if (!is_array($raw) || !$raw) {
            $this->refuse(400, 'Select at least one client (or "all matching"). Nothing was started.');
            return null;
        }
        $pairs = [];
        foreach ($raw as $value) {
            $parts = is_string($value) ? explode('/', $value) : [];
            if (count($parts) !== 2 || $parts[0] === '' || $parts[1] === '') {
                $this->refuse(400, 'A selected client is "server/client". Nothing was started.');
                return null;
            }
            $pairs[rawurldecode($parts[0]) . "\n" . rawurldecode($parts[1])] = [rawurldecode($parts[0]), rawurldecode($parts[1])];
        }
        return array_values($pairs);
    }

    private function sizeOk(int $count): bool
    {
        if ($count === 0 || $count > UpdatesQuery::MAX_TARGETS) {
            $this->refuse(422, $count === 0 ? 'No client to act on (none selected, or every one left out): nothing was started.'
                : 'More than ' . UpdatesQuery::MAX_TARGETS . ' clients match: narrow the filter. Nothing was started.');
            return false;
        }
        return true;
    }

    /** A posted whole number from 1 to MAX_TARGETS, or null after answering 422. */
    private function whole(string $name, string $label): ?int
    {
        $raw = trim(AuthPages::posted($name));
        if (!preg_match('/^[0-9]{1,5}$/', $raw) || (int) $raw < 1 || (int) $raw > UpdatesQuery::MAX_TARGETS) {
            $this->refuse(422, sprintf('%s must be a whole number from 1 to %d (got "%s"). Nothing was started.', $label,
                UpdatesQuery::MAX_TARGETS, (string) iconv_substr($raw, 0, 40)));
            return null;
        }
        return (int) $raw;
    }

    private function reason(): ?string
    {
        $reason = trim(AuthPages::posted('reason'));
        if ($reason === '' || iconv_strlen($reason) === false || iconv_strlen($reason) > ServersPage::MAX_REASON) {
            $this->refuse(422, 'A reason (1-' . ServersPage::MAX_REASON . ' characters) is required: every client\'s user is shown it and the audit trail keeps it. Nothing was started.');
            return null;
        }
        return $reason;
    }

    private function refuse(int $status, string $message): void
    {
        App::fail($status, $message, $this->auth->user());
    }

    private function api(): ?AdminApi
    {
        return AdminApi::fromConfig(Config::fromEnv());
    }
}
