<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The history tabs (HistoryTabs): one list page and one CSV export each, both GETs that change nothing.
 * The route's role (Router) is the tab's; sealed fields are opened here only for roles that may read them.
 */
final class HistoryPage
{
    /** a leading character a spreadsheet would take as the start of a formula */
    private const FORMULA_START = ['=', '+', '-', '@', "\t", "\r"];

    private readonly Sealed $sealed;

    public function __construct(private readonly PDO $db, private readonly Auth $auth, private readonly ?Config $config = null)
    {
        $this->sealed = new Sealed($config?->webKeyPath());
    }

    public function sessions(): void { $this->show('sessions'); }
    public function sessionsCsv(): void { $this->csv('sessions'); }
    public function security(): void { $this->show('security'); }
    public function securityCsv(): void { $this->csv('security'); }
    public function logs(): void { $this->show('logs'); }
    public function logsCsv(): void { $this->csv('logs'); }
    public function fileops(): void { $this->show('fileops'); }
    public function fileopsCsv(): void { $this->csv('fileops'); }
    public function messages(): void { $this->show('messages'); }
    public function messagesCsv(): void { $this->csv('messages'); }
    public function captures(): void { $this->show('captures'); }
    public function capturesCsv(): void { $this->csv('captures'); }

    /** POST /history/grant (tab, reason, the tab's filters): record why this person opens an audited tab, then open it. */
    public function grant(): void
    {
        $user = $this->auth->user();
        $tab = AuthPages::posted('tab');
        if (!HistoryGate::audited($tab) || !Auth::allows($user, HistoryTabs::get($tab)['role'])) {
            App::fail(403, 'No audited history tab of that name for your role.', $user);
            return;
        }
        $filters = HistoryGate::filters(HistoryQuery::fromRequest($tab, $user, $_POST));
        $reason = HistoryGate::reason(AuthPages::posted('reason'));
        if ($reason === null) {
            $this->askReason($tab, $user, $filters, 'A reason of 1-' . HistoryGate::MAX_REASON . ' characters is required.', 422);
            return;
        }
        $bus = HistoryGate::forward(AdminApi::fromConfig(Config::fromEnv()), $user, $tab, $reason, $filters);
        (new HistoryGate($this->db))->open($user, $tab, $reason, $filters, $bus);
        App::redirect('/' . $tab . ($filters ? '?' . http_build_query($filters) : ''));
    }

    /** The reason form an audited tab shows instead of its rows (a GET: it changes nothing). */
    private function askReason(string $tab, ?array $user, array $filters, string $error = '', int $status = 200): void
    {
        View::page('history_reason', ['title' => HistoryTabs::get($tab)['title'], 'tab' => $tab, 'user' => $user,
            'filters' => $filters, 'error' => $error, 'minutes' => intdiv(HistoryGate::GRANT_S, 60)], $status);
    }

    private function show(string $name): void
    {
        $user = $this->auth->user();
        $grant = HistoryGate::audited($name) ? (new HistoryGate($this->db))->grant($user, $name) : null;
        if (HistoryGate::audited($name) && $grant === null) {
            $this->askReason($name, $user, HistoryGate::filters(HistoryQuery::fromRequest($name, $user, $_GET)));
            return;
        }
        $query = HistoryQuery::fromRequest($name, $user, $_GET);
        [$rows, $total] = $query->page($this->db);
        $servers = $this->db->query("SELECT server_id, COALESCE(NULLIF(name, ''), server_id) AS name FROM servers ORDER BY name")->fetchAll();
        View::page('history', ['title' => HistoryTabs::get($name)['title'], 'tab' => $name, 'user' => $user,
            'query' => $query, 'rows' => array_map(fn (array $row): array => $this->cells($query, $row), $rows),
            'total' => $total, 'pages' => ListParams::pages($total, $query->perPage), 'servers' => $servers,
            'pictures' => $name === 'captures' ? $this->pictures($rows) : null, 'grant' => $grant]);
    }

    /** The Captures tab's picture cells: per row, its server and capture id and why it cannot be shown (null: it can). */
    private function pictures(array $rows): array
    {
        return ['maxReason' => Bridge::maxReason($this->config), 'rows' => array_map(fn (array $row): array => [
            'server' => (string) $row['row_server'], 'id' => (string) $row['row_id'],
            'whyNot' => Bridge::whyNot($this->config, (string) $row['row_server'])], $rows)];
    }

    private function csv(string $name): void
    {
        if (HistoryGate::audited($name) && (new HistoryGate($this->db))->grant($this->auth->user(), $name) === null) {
            App::fail(403, 'Open the ' . HistoryTabs::get($name)['title'] . ' tab and give your reason first: every export is audited.',
                $this->auth->user());
            return;
        }
        $query = HistoryQuery::fromRequest($name, $this->auth->user(), $_GET);
        $rows = $query->all($this->db);
        header('Content-Type: text/csv; charset=utf-8');
        header('Content-Disposition: attachment; filename="ems-' . $name . '-' . gmdate('Ymd-His') . '.csv"');
        $out = fopen('php://output', 'wb');
        fputcsv($out, array_map(static fn (array $c): string => self::csvCell($c[0]), array_values($query->shown())), ',', '"', '');
        while (($row = $rows->fetch()) !== false) {
            $cells = $this->cells($query, $row);
            $line = [];
            foreach ($query->shown() as $key => $column) {
                $value = $cells[$key];
                $line[] = self::csvCell($column[2] === 'time' && $value !== null ? gmdate('Y-m-d\TH:i:s\Z', (int) $value) : $value);
            }
            fputcsv($out, $line, ',', '"', '');
        }
        fclose($out);
    }

    /** One shown row's values by column key, sealed ones opened (the query selected only those this user may read). */
    private function cells(HistoryQuery $query, array $row): array
    {
        $table = HistoryTabs::get($query->name)['table'];
        $cells = [];
        foreach ($query->shown() as $key => $column) {
            $cells[$key] = HistoryTabs::sealedRole($column) === null ? $row[$key]
                : $this->sealed->open($row[$key], $table, $key, (string) $row['row_server'], (string) $row['row_id']);
        }
        return $cells;
    }

    /** A CSV cell a spreadsheet shows as text: a value starting like a formula gets a leading quote. */
    public static function csvCell(mixed $value): string
    {
        $text = (string) ($value ?? '');
        return $text !== '' && in_array($text[0], self::FORMULA_START, true) ? "'" . $text : $text;
    }
}
