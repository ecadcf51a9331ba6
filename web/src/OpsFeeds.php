<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Operations tab's Inbox, Alerts, Schedules and Broadcasts views, through the admin API in the web user's name:
 * the broker keeps one inbox per web person (web:<name>), so marking read is theirs alone. Everyone reads; operators
 * and admins acknowledge alerts and send broadcasts (after a preview of the recipients), each with a reason.
 * Operators and admins schedule a template run (the person owns it: only they pause, resume or remove it).
 */
final class OpsFeeds
{
    public const VIEWS = ['inbox', 'alerts', 'schedules', 'broadcasts'];
    public const MAX_TEXT = 10000;
    /** how long the nav bar's unread count is kept in the session (seconds) */
    private const BADGE_TTL_S = 30;
    private const BADGE = 'inbox_badge';
    private const ID = '/^[A-Za-z0-9_.-]{1,64}$/';
    public const SCHEDULE_ACTIONS = ['pause', 'resume', 'remove'];
    public const MISSED = ['skip' => 'skip missed runs', 'once' => 'run once when back'];

    private readonly OperationsPage $page;

    public function __construct(PDO $db, private readonly Auth $auth, ?Config $config = null)
    {
        $this->page = new OperationsPage($db, $auth, $config);
    }

    /** The template variables of $view (one of VIEWS); $asked: the broadcast and the template (for a new schedule)
     *  the URL names, or ''. */
    public function vars(string $view, array $asked = []): array
    {
        return match (true) {
            $view === 'inbox' => $this->inbox(),
            $view === 'alerts' => $this->page->listView('/api/alerts?all=1&limit=200', 'alerts'),
            $view === 'schedules' => $this->schedulesView((string) ($asked['template'] ?? '')),
            ($asked['broadcast'] ?? '') !== '' => $this->broadcastView((string) $asked['broadcast']),
            default => $this->page->listView('/api/broadcasts?limit=50', 'broadcasts'),
        };
    }

    /** The unread notices of $user for the nav bar's badge (kept 30 s in the session); null when unknown. */
    public static function unread(?array $user): ?int
    {
        if ($user === null || session_status() !== PHP_SESSION_ACTIVE) {
            return null;
        }
        $kept = $_SESSION[self::BADGE] ?? null;
        if (is_array($kept) && $kept[0] > time() - self::BADGE_TTL_S) {
            return $kept[1];
        }
        $api = AdminApi::fromConfig(Config::fromEnv());
        [$status, $answer] = $api === null ? [0, []] : $api->call('GET', '/api/inbox?limit=1', null, $user);
        $count = $status === 200 && is_int($answer['unread'] ?? null) ? $answer['unread'] : null;
        $_SESSION[self::BADGE] = [time(), $count];
        return $count;
    }

    /** POST /operations/inbox-read (id, or all=1): mark this web user's notice (or all of them) read. */
    public function markRead(): void
    {
        $id = AuthPages::posted('id');
        $all = AuthPages::posted('all') === '1';
        if (!$all && !preg_match('/^[1-9][0-9]{0,17}$/', $id)) {
            $this->page->back('inbox', 'danger', 'Unknown notice; nothing was marked.');
            return;
        }
        [$ok, $answer] = $this->page->call('POST', '/api/inbox/read', $all ? ['all' => true] : ['ids' => [(int) $id]]);
        unset($_SESSION[self::BADGE]);
        $this->page->back('inbox', $ok ? 'success' : 'danger', $ok
            ? 'Marked ' . (int) ($answer['marked'] ?? 0) . ' notice(s) read; ' . (int) ($answer['unread'] ?? 0) . ' unread left.'
            : $this->page->refusal($answer));
    }

    /** POST /operations/ack (id, reason): acknowledge an open alert as this web user. */
    public function ack(): void
    {
        $id = AuthPages::posted('id');
        $reason = OperationsPage::checkedReason(AuthPages::posted('reason'));
        if (!preg_match('/^[1-9][0-9]{0,17}$/', $id) || $reason === null) {
            $this->page->back('alerts', 'danger', $reason === null ? OperationsPage::reasonHelp() : 'Unknown alert; nothing was acknowledged.');
            return;
        }
        [$ok, $answer] = $this->page->call('POST', '/api/alerts/' . $id . '/ack', ['reason' => $reason]);
        $this->page->back('alerts', $ok ? 'success' : 'danger', $ok
            ? 'Acknowledged: ' . ($answer['title'] ?? $id) . '.' : $this->page->refusal($answer));
    }

    /** POST /operations/broadcast (selector, text, reason, preview, previewed): preview the recipients, then send
     *  (only to the selector whose recipients the person saw; another one is previewed again first). */
    public function broadcast(): void
    {
        $form = ['selector' => trim(AuthPages::posted('selector')), 'text' => trim(AuthPages::posted('text'))];
        $preview = AuthPages::posted('preview') === '1' || AuthPages::posted('previewed') !== $form['selector'];
        $back = fn (string $error, array $more = []): mixed => $this->page->show(['view' => 'broadcasts', 'form' => $form,
            'error' => $error] + $more + $this->page->listView('/api/broadcasts?limit=50', 'broadcasts'), $error === '' ? 200 : 422);
        $length = iconv_strlen($form['text']);
        if ($form['selector'] === '' || strlen($form['selector']) > 1000 || $length === false || $length < 1 || $length > self::MAX_TEXT) {
            $back('A selector (which agents) and a message of 1 to ' . self::MAX_TEXT . ' characters are required; nothing was sent.');
            return;
        }
        if ($preview) {
            [$ok, $answer] = $this->page->call('GET', '/api/targets?selector=' . rawurlencode($form['selector']) . '&limit=200', null);
            $ok ? $back('', ['preview' => $answer]) : $back($this->page->refusal($answer));
            return;
        }
        $reason = OperationsPage::checkedReason(AuthPages::posted('reason'));
        if ($reason === null) {
            $back(OperationsPage::reasonHelp());
            return;
        }
        [$ok, $answer] = $this->page->call('POST', '/api/broadcasts', $form + ['reason' => $reason]);
        $ok ? $this->page->back(['view' => 'broadcasts', 'broadcast' => (string) ($answer['id'] ?? '')], 'success',
            'Sent to ' . (int) ($answer['count'] ?? 0) . ' agent(s); receipts arrive as they read it.') : $back($this->page->refusal($answer));
    }

    /** POST /operations/schedule (template, name, cron or at, tz, missed, reason, selector, p[<param>]..., pacing): a
     *  schedule of the template owned by this web user; the broker tries the run as a dry run first. */
    public function addSchedule(): void
    {
        $template = AuthPages::posted('template');
        $form = TemplateForm::fromPost($_POST);
        $when = ['name' => trim(AuthPages::posted('name')), 'cron' => trim(AuthPages::posted('cron')),
            'at' => trim(AuthPages::posted('at')), 'tz' => trim(AuthPages::posted('tz')), 'missed' => AuthPages::posted('missed')];
        $reason = OperationsPage::checkedReason(AuthPages::posted('reason'));
        $problem = match (true) {
            !preg_match(self::ID, $template) => 'Choose a template first; nothing was scheduled.',
            $form->problem !== '' => $form->problem,
            ($when['cron'] === '') === ($when['at'] === '') => 'Give either a cron expression (repeating) or a time (once), one of the two.',
            $reason === null => OperationsPage::reasonHelp(),
            default => '',
        };
        $answer = [];
        if ($problem === '') {
            $body = ['template' => $template, 'reason' => $reason] + array_filter($when, static fn ($v) => $v !== '') + $form->body();
            [$ok, $answer] = $this->page->call('POST', '/api/schedules', $body);
            $problem = $ok ? '' : $this->page->refusal($answer);
        }
        if ($problem === '') {
            $this->page->back('schedules', 'success', 'Scheduled ' . ($answer['name'] ?? '') . '; next run ' . ($answer['next_due_text'] ?? '?') . '.');
            return;
        }
        $this->page->show(['view' => 'schedules', 'error' => $problem, 'form' => $form->values, 'slot' => $when]
            + $this->schedulesView(preg_match(self::ID, $template) ? $template : ''), 422);
    }

    /** POST /operations/schedule-change (id, action pause|resume|remove, reason): as the person who made it. */
    public function changeSchedule(): void
    {
        $id = AuthPages::posted('id');
        $action = AuthPages::posted('action');
        $reason = OperationsPage::checkedReason(AuthPages::posted('reason'));
        if (!preg_match(self::ID, $id) || !in_array($action, self::SCHEDULE_ACTIONS, true) || $reason === null) {
            $this->page->back('schedules', 'danger', $reason === null ? OperationsPage::reasonHelp() : 'Unknown schedule or action; nothing was changed.');
            return;
        }
        [$ok, $answer] = $this->page->call('POST', '/api/schedules/' . rawurlencode($id) . '/' . $action, ['reason' => $reason]);
        $this->page->back('schedules', $ok ? 'success' : 'danger', $ok
            ? ucfirst($action === 'remove' ? 'removed' : $action . 'd') . ': ' . ($answer['name'] ?? $id) . '.' : $this->page->refusal($answer));
    }

    private function schedulesView(string $template): array
    {
        $vars = $this->page->listView('/api/schedules', 'schedules');
        [$ok, $answer] = $this->page->call('GET', '/api/templates', null);
        return $vars + ['templates' => $ok && is_array($answer['templates'] ?? null) ? $answer['templates'] : [], 'chosenName' => $template];
    }

    private function inbox(): array
    {
        [$ok, $answer] = $this->page->call('GET', '/api/inbox?limit=200', null);
        if (!$ok) {
            return ['rows' => [], 'error' => $this->page->refusal($answer)];
        }
        $_SESSION[self::BADGE] = [time(), (int) ($answer['unread'] ?? 0)];
        return ['rows' => is_array($answer['items'] ?? null) ? $answer['items'] : [], 'unread' => (int) ($answer['unread'] ?? 0)];
    }

    private function broadcastView(string $id): array
    {
        if (!preg_match(self::ID, $id)) {
            return ['rows' => [], 'error' => 'Unknown broadcast.'];
        }
        [$ok, $answer] = $this->page->call('GET', '/api/broadcasts/' . rawurlencode($id), null);
        return $ok ? ['broadcast' => $answer] : ['rows' => [], 'error' => $this->page->refusal($answer)];
    }
}
