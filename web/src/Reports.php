<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * One user's saved reports (web_reports): a name, a history tab (HistoryTabs) and that tab's query parameters
 * (filters, sort, page size, chosen columns). A user sees and changes only their own; another user's report id
 * is "not found". A report is checked against the user's role and the tab's allowlists when it is saved and
 * again whenever it is opened: it never shows more than the tab would show this user without it.
 */
final class Reports
{
    public const MAX_NAME = 100;
    public const MAX_PER_USER = 200;
    /** the tab parameters a report keeps (never the page) */
    private const KEPT = ['q', 'server', 'client', 'sort', 'dir', 'per', 'cols'];

    public function __construct(private readonly PDO $db, private readonly array $user)
    {
    }

    /** This user's reports by name: id, name, tab, params (decoded), created, updated. */
    public function all(): array
    {
        $list = $this->db->prepare('SELECT id, name, tab, params, created, updated FROM web_reports WHERE user_id = :user ORDER BY name');
        $list->execute([':user' => $this->user['id']]);
        return array_map(self::decoded(...), $list->fetchAll());
    }

    /** This user's report with id $id (a request parameter); refused with 404 when it is not theirs or not there. */
    public function own(string $id): array
    {
        if (!ctype_digit($id) || strlen($id) > 18) {
            throw new ReportRefused('No such report of yours.', 404);
        }
        $find = $this->db->prepare('SELECT id, name, tab, params, created, updated FROM web_reports WHERE id = :id AND user_id = :user');
        $find->execute([':id' => (int) $id, ':user' => $this->user['id']]);
        $row = $find->fetch();
        return $row ? self::decoded($row) : throw new ReportRefused('No such report of yours.', 404);
    }

    /** Save the $tab query $params (a request's) under $name; returns the new report's id. */
    public function save(string $name, string $tab, array $params): int
    {
        $name = $this->checkedName($name);
        $query = $this->query($tab, $params, true);
        $count = $this->db->prepare('SELECT COUNT(*) FROM web_reports WHERE user_id = :user');
        $count->execute([':user' => $this->user['id']]);
        if ((int) $count->fetchColumn() >= self::MAX_PER_USER) {
            throw new ReportRefused('You have ' . self::MAX_PER_USER . ' saved reports already: delete one first.', 409);
        }
        $kept = array_map('strval', array_intersect_key($query->params(), array_flip(self::KEPT)));
        $insert = $this->db->prepare('INSERT INTO web_reports (user_id, name, tab, params, created, updated)
                                      VALUES (:user, :name, :tab, :params, :now, :now2)');
        $now = microtime(true);
        $this->unique(fn () => $insert->execute([':user' => $this->user['id'], ':name' => $name, ':tab' => $tab,
            ':params' => json_encode($kept, JSON_THROW_ON_ERROR), ':now' => $now, ':now2' => $now]), $name);
        return (int) $this->db->lastInsertId();
    }

    public function rename(array $report, string $name): void
    {
        $name = $this->checkedName($name);
        $update = $this->db->prepare('UPDATE web_reports SET name = :name, updated = :now WHERE id = :id AND user_id = :user');
        $this->unique(fn () => $update->execute([':name' => $name, ':now' => microtime(true), ':id' => $report['id'],
            ':user' => $this->user['id']]), $name);
    }

    public function delete(array $report): void
    {
        $this->db->prepare('DELETE FROM web_reports WHERE id = :id AND user_id = :user')
            ->execute([':id' => $report['id'], ':user' => $this->user['id']]);
    }

    /** The tab's URL (its CSV export's with $csv) that shows $report, checked against this user's role now. */
    public function url(array $report, bool $csv): string
    {
        $params = $this->query($report['tab'], $report['params'], false)->params();
        unset($params['page']);
        if ($csv) {
            unset($params['per']);
        }
        return '/' . $report['tab'] . ($csv ? '.csv' : '') . View::query($params, []);
    }

    /** Whether this user's role may open a report of $tab (a report of an operator-only tab is not a viewer's). */
    public function mayOpen(string $tab): bool
    {
        return isset(HistoryTabs::TABS[$tab]) && Auth::allows($this->user, HistoryTabs::TABS[$tab]['role']);
    }

    /** The tab's query for $params; refused for a tab above the user's role and, when $strict, for unknown columns. */
    private function query(string $tab, array $params, bool $strict): HistoryQuery
    {
        if (!isset(HistoryTabs::TABS[$tab])) {
            throw new ReportRefused('Reports are saved from the Sessions, Security, Logs, File Ops, Messages and Captures tabs only.', 400);
        }
        $spec = HistoryTabs::TABS[$tab];
        if (!$this->mayOpen($tab)) {
            throw new ReportRefused('Your web role (' . $this->user['role'] . ') may not see the ' . $spec['title']
                . ' tab; it needs ' . $spec['role'] . '.', 403);
        }
        $query = HistoryQuery::fromRequest($tab, $this->user, $params);
        [, $unknown] = HistoryQuery::choose($query->columns, $params['cols'] ?? null);
        if ($strict && $unknown) {
            throw new ReportRefused('The ' . $spec['title'] . ' tab has no column ' . implode(', ', array_map(
                static fn (string $key): string => '"' . $key . '"', $unknown)) . ' that you may see; its columns: '
                . implode(', ', array_keys($query->columns)) . '.', 400);
        }
        return $query;
    }

    private function checkedName(string $name): string
    {
        $name = trim($name);
        if ($name === '' || preg_match('/\p{Cc}/u', $name) !== 0) {  // false: not UTF-8
            throw new ReportRefused('A report needs a name: printable text, without control characters.', 400);
        }
        if (iconv_strlen($name, 'UTF-8') > self::MAX_NAME) {
            throw new ReportRefused('A report name is at most ' . self::MAX_NAME . ' characters long.', 400);
        }
        return $name;
    }

    /** Run a write that may meet the (user, name) unique key; a duplicate name is refused, nothing written. */
    private function unique(callable $write, string $name): void
    {
        try {
            $write();
        } catch (\PDOException $exc) {
            if (($exc->errorInfo[1] ?? 0) === 1062) {  // ER_DUP_ENTRY
                throw new ReportRefused('You have a report named "' . $name . '" already: choose another name.', 409);
            }
            throw $exc;
        }
    }

    private static function decoded(array $row): array
    {
        $params = json_decode((string) $row['params'], true);
        $params = is_array($params) ? array_filter($params, 'is_string') : [];
        return ['params' => $params] + $row;
    }
}
