<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Operations tab: two-person approvals, bulk runs and command templates, all through the admin API in the web
 * user's name (AdminApi). Everyone with a web role sees them; operators and admins approve or deny (never their own
 * request: the broker checks the person, this page only hides the buttons), cancel runs they started, and run
 * templates after a dry-run preview of the targets. Every action takes a reason; every refusal is shown as the
 * admin API's sentence with what to do.
 */
final class OperationsPage
{
    public const VIEWS = ['inbox' => 'Inbox', 'alerts' => 'Alerts', 'approvals' => 'Approvals', 'bulk' => 'Bulk runs',
        'templates' => 'Templates', 'schedules' => 'Schedules', 'broadcasts' => 'Broadcasts'];
    public const MAX_REASON = 500;
    public const PER_PAGE = 50;
    /** run states after which nothing more happens (no Cancel) */
    public const ENDED = ['finished', 'halted', 'cancelled'];
    private const FLASH = 'ops_flash';
    private const ID = '/^[A-Za-z0-9_.-]{1,64}$/';

    public function __construct(private readonly PDO $db, private readonly Auth $auth, private readonly ?Config $config = null)
    {
    }

    /** GET /operations?view=inbox|alerts|approvals|bulk|templates|schedules|broadcasts (&run=<id>&page=N,
     *  &template=<name>, &broadcast=<id>); the inbox, alerts, schedules and broadcasts views are OpsFeeds'. */
    public function show(array $extra = [], int $status = 200): void
    {
        $asked = is_string($_GET['view'] ?? null) && isset(self::VIEWS[$_GET['view']]) ? $_GET['view'] : 'approvals';
        $view = $extra['view'] ?? $asked;
        $run = ListParams::text($_GET, 'run', 64);
        $template = ListParams::text($_GET, 'template', 64);
        $broadcast = ListParams::text($_GET, 'broadcast', 64);
        $vars = match (true) {
            isset($extra['view']) => $extra,
            in_array($view, OpsFeeds::VIEWS, true) => (new OpsFeeds($this->db, $this->auth, $this->config))->vars($view, ['broadcast' => $broadcast, 'template' => $template]),
            $view === 'bulk' && $run !== '' => $this->runView($run),
            $view === 'bulk' => $this->listView('/api/bulk?limit=50', 'runs'),
            $view === 'templates' => ['chosenName' => $template] + $this->listView('/api/templates', 'templates'),
            default => $this->listView('/api/approvals?state=all&limit=200', 'approvals'),
        };
        $user = $this->auth->user();
        $flash = $_SESSION[self::FLASH] ?? null;
        unset($_SESSION[self::FLASH]);
        View::page('operations', ['title' => 'Operations', 'tab' => 'operations', 'user' => $user, 'view' => $view,
            'views' => self::VIEWS, 'canAct' => Auth::allows($user, 'operator'), 'apiOn' => $this->api() !== null,
            'me' => AdminApi::operatorName($user), 'flash' => is_array($flash) ? $flash : null, 'ended' => self::ENDED,
            'perPage' => self::PER_PAGE, 'maxReason' => self::MAX_REASON] + $vars + ['error' => '', 'rows' => []], $status);
    }

    /** POST /operations/decide (id, approve 1|0, reason): approve or deny a held request as this web user. */
    public function decide(): void
    {
        $id = AuthPages::posted('id');
        $approve = AuthPages::posted('approve');
        $reason = $this->reason();
        if (!preg_match(self::ID, $id) || !in_array($approve, ['0', '1'], true) || $reason === null) {
            $this->back('approvals', 'danger', $reason === null ? self::reasonHelp() : 'Unknown request or decision; nothing was decided.');
            return;
        }
        [$ok, $answer] = $this->call('POST', '/api/approvals/' . rawurlencode($id) . '/decide',
            ['approve' => $approve === '1', 'reason' => $reason]);
        $this->back('approvals', $ok ? 'success' : 'danger', $ok
            ? ($approve === '1' ? 'Approved' : 'Denied') . ': ' . ($answer['summary'] ?? $id) . ' (asked by '
              . ($answer['requester_name'] ?? '?') . ').'
            : $this->refusal($answer));
    }

    /** POST /operations/cancel (id, reason): stop a bulk run this web user started. */
    public function cancel(): void
    {
        $id = AuthPages::posted('id');
        $reason = $this->reason();
        $where = ['view' => 'bulk', 'run' => preg_match(self::ID, $id) ? $id : ''];
        if ($where['run'] === '' || $reason === null) {
            $this->back($where, 'danger', $reason === null ? self::reasonHelp() : 'Unknown run; nothing was cancelled.');
            return;
        }
        [$ok, $answer] = $this->call('POST', '/api/bulk/' . rawurlencode($id) . '/cancel', ['reason' => $reason]);
        $this->back($where, $ok ? 'success' : 'danger', $ok ? 'Cancelled: ' . ($answer['why'] ?? '') : $this->refusal($answer));
    }

    /** POST /operations/run (template, selector, p[<param>]..., max_parallel, canary, halt_failure_pct, reason, preview,
     *  previewed: the selector whose targets the person saw; Run with another one shows its preview instead). */
    public function run(): void
    {
        $name = AuthPages::posted('template');
        $form = TemplateForm::fromPost($_POST);
        // Run only on the targets the person saw: a selector changed since its preview is previewed again first
        $preview = AuthPages::posted('preview') === '1' || AuthPages::posted('previewed') !== $form->values['selector'];
        $back = fn (string $error, array $more = []): mixed => $this->show(['view' => 'templates', 'chosenName' => $name,
            'form' => $form->values, 'error' => $error] + $more + $this->listView('/api/templates', 'templates'), 422);
        if (!preg_match(self::ID, $name) || $form->problem !== '') {
            $back(preg_match(self::ID, $name) ? $form->problem : 'Unknown template; nothing was run.');
            return;
        }
        $reason = $preview ? '' : $this->reason();
        if ($reason === null) {
            $back(self::reasonHelp());
            return;
        }
        $body = $form->body() + ($preview ? ['dry_run' => true] : ['reason' => $reason]);
        [$ok, $answer] = $this->call('POST', '/api/templates/' . rawurlencode($name) . '/run', $body);
        if (!$ok) {
            $back($this->refusal($answer));
            return;
        }
        if ($preview) {
            $this->show(['view' => 'templates', 'chosenName' => $name, 'form' => $form->values, 'preview' => $answer]
                + $this->listView('/api/templates', 'templates'));
            return;
        }
        $held = ($answer['state'] ?? '') === 'held';
        $this->back(['view' => 'bulk', 'run' => (string) ($answer['id'] ?? '')], $held ? 'warning' : 'success', $held
            ? 'Held: nothing is sent until another person approves it on the Approvals tab (' . ($answer['why'] ?? '') . ').'
            : 'Started ' . $name . ' on ' . (int) ($answer['count'] ?? 0) . ' agent(s).');
    }

    // -- reading -----------------------------------------------------------------------
    public function listView(string $path, string $key): array
    {
        [$ok, $answer] = $this->call('GET', $path, null);
        return $ok ? ['rows' => is_array($answer[$key] ?? null) ? $answer[$key] : []] : ['rows' => [], 'error' => $this->refusal($answer)];
    }

    private function runView(string $id): array
    {
        $page = max(1, min(1000, (int) (is_string($_GET['page'] ?? null) ? $_GET['page'] : 1)));
        $offset = ($page - 1) * self::PER_PAGE;
        [$ok, $answer] = $this->call('GET', '/api/bulk/' . rawurlencode($id) . '?offset=' . $offset . '&limit=' . self::PER_PAGE, null);
        return $ok ? ['runDetail' => $answer, 'page' => $page] : ['runDetail' => null, 'error' => $this->refusal($answer)];
    }

    // -- helpers -----------------------------------------------------------------------
    private function api(): ?AdminApi
    {
        return AdminApi::fromConfig($this->config ?? Config::fromEnv());
    }

    /** [ok, answer] from the admin API in this web user's name; not ok with an error when it is off or away. */
    public function call(string $method, string $path, ?array $body): array
    {
        $api = $this->api();
        if ($api === null) {
            return [false, ['error' => 'the admin API is not configured', 'hint' => '`ems up` starts it when EMS_ADMIN_TOKEN is set']];
        }
        [$status, $answer] = $api->call($method, $path, $body, $this->auth->user());
        return [$status >= 200 && $status < 300, $answer];
    }

    /** The admin API's refusal as one sentence with what to do. */
    public function refusal(array $answer): string
    {
        $error = trim((string) ($answer['error'] ?? 'the admin API refused'));
        $hint = trim((string) ($answer['hint'] ?? ''));
        return ucfirst($error) . ($hint !== '' ? ' — ' . $hint : '') . '. Nothing was changed.';
    }

    private function reason(): ?string
    {
        return self::checkedReason(AuthPages::posted('reason'));
    }

    /** $posted trimmed if it is a usable reason (1 to MAX_REASON characters), else null. */
    public static function checkedReason(string $posted): ?string
    {
        $reason = trim($posted);
        return $reason === '' || (iconv_strlen($reason) === false || iconv_strlen($reason) > self::MAX_REASON) ? null : $reason;
    }

    public static function reasonHelp(): string
    {
        return 'A reason is required (1 to ' . self::MAX_REASON . ' characters): it is kept in the audit trail with your name.';
    }

    /** Back to a view (303) with a message shown once. */
    public function back(string|array $where, string $kind, string $text): void
    {
        $_SESSION[self::FLASH] = [$kind, $text];
        App::redirect('/operations' . View::query([], is_array($where) ? $where : ['view' => $where]));
    }
}
