<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;
use PDOStatement;

/**
 * The list component's query over one history tab (HistoryTabs): a text filter over its plain text
 * columns, a server and a client filter, sorting on the tab's allowlisted columns, server-side paging.
 * Everything from the request is checked against an allowlist or bound as a named parameter.
 */
final class HistoryQuery
{
    public const PAGE_SIZES = ListParams::PAGE_SIZES;
    /** the most rows one CSV export holds */
    public const CSV_LIMIT = 100000;
    /** matching rows are counted up to this many (beyond: "more than"): an exact count of a text filter over a
     * million log rows reads every row (seconds, bench/web.py); the page itself stops at its last row */
    public const COUNT_CAP = 10000;

    /** true when more rows match than COUNT_CAP (the total is then COUNT_CAP + 1) */
    public bool $capped = false;

    public string $q = '';
    public string $server = '';
    public string $client = '';
    public string $sort;
    public string $dir = 'desc';
    public int $page = 1;
    public int $perPage = ListParams::DEFAULT_PER_PAGE;
    /** the columns chosen to show, in the tab's order; [] = every column this user may see */
    public array $chosen = [];

    /** @param array $columns the columns this user may see (HistoryTabs::visibleColumns) */
    private function __construct(public readonly string $name, private readonly array $tab, public readonly array $columns)
    {
        $this->sort = $tab['sort'];
    }

    /** The query from request parameters; anything not allowed falls back to the default. */
    public static function fromRequest(string $name, ?array $user, array $params): self
    {
        $tab = HistoryTabs::get($name);
        $query = new self($name, $tab, HistoryTabs::visibleColumns($tab, $user));
        $query->q = ListParams::filter($params);
        $query->server = ListParams::text($params, 'server', 64);
        $query->client = ListParams::text($params, 'client', 128);
        $sortable = array_keys(array_filter($query->columns, static fn (array $c): bool => HistoryTabs::sealedRole($c) === null));
        $query->sort = ListParams::sort($params, $sortable, $query->sort);
        $query->dir = ListParams::dir($params, 'desc');
        $query->page = ListParams::page($params);
        $query->perPage = ListParams::perPage($params);
        [$query->chosen] = self::choose($query->columns, $params['cols'] ?? null);
        return $query;
    }

    /**
     * [chosen keys in the tab's order ([] for all of them), the asked-for keys that are not among $columns].
     * $cols: a comma-separated string or a list of keys (the column chooser's checkboxes); anything else is none.
     */
    public static function choose(array $columns, mixed $cols): array
    {
        $asked = is_string($cols) ? explode(',', $cols) : (is_array($cols) ? $cols : []);
        $asked = array_values(array_filter(array_map(static fn ($k): string => is_string($k) ? trim($k) : '?', $asked),
            static fn (string $k): bool => $k !== ''));
        $chosen = array_values(array_intersect(array_keys($columns), $asked));
        $unknown = array_values(array_diff($asked, array_keys($columns)));
        return [count($chosen) === count($columns) ? [] : $chosen, $unknown];
    }

    /** The columns to show (and export): the chosen ones, or every one this user may see. */
    public function shown(): array
    {
        return $this->chosen ? array_intersect_key($this->columns, array_flip($this->chosen)) : $this->columns;
    }

    /** The URL parameters that reproduce this query. */
    public function params(): array
    {
        $params = ['q' => $this->q, 'server' => $this->server, 'client' => $this->client, 'sort' => $this->sort,
            'dir' => $this->dir, 'page' => $this->page, 'per' => $this->perPage];
        return $this->chosen ? $params + ['cols' => implode(',', $this->chosen)] : $params;
    }

    /** [rows of this page, total matching rows up to COUNT_CAP + 1 (see $capped)]; the page is clamped to the last one. */
    public function page(PDO $db): array
    {
        [$where, $binds] = $this->where();
        $count = $db->prepare('SELECT COUNT(*) FROM (SELECT 1' . $this->from() . $where . ' LIMIT :cap) AS counted');
        foreach ($binds as $name => $value) {
            $count->bindValue($name, $value);
        }
        $count->bindValue(':cap', self::COUNT_CAP + 1, PDO::PARAM_INT);
        $count->execute();
        $total = (int) $count->fetchColumn();
        $this->capped = $total > self::COUNT_CAP;
        if ($total === 0) {  // the count has read what a filter matching nothing reads: the page would read it again
            $this->page = 1;
            return [[], 0];
        }
        $this->page = min($this->page, ListParams::pages($total, $this->perPage));
        $select = $this->select($db, $where, $binds, $this->perPage, ($this->page - 1) * $this->perPage);
        return [$select->fetchAll(), $total];
    }

    /** Every matching row (up to CSV_LIMIT) in this order, as an executed statement to fetch from. */
    public function all(PDO $db): PDOStatement
    {
        [$where, $binds] = $this->where();
        return $this->select($db, $where, $binds, self::CSV_LIMIT, 0);
    }

    private function from(): string
    {
        return ' FROM ' . $this->tab['table'] . ' t LEFT JOIN servers s ON s.server_id = t.server_id';
    }

    private function select(PDO $db, string $where, array $binds, int $limit, int $offset): PDOStatement
    {
        $fields = ['t.server_id AS row_server', 't.id AS row_id'];
        foreach ($this->columns as $key => $column) {
            $fields[] = $column[1] . ' AS ' . $key;  // both from HistoryTabs, never from the request
        }
        // the tie-breakers go the sort's way: an index on the sort column (InnoDB appends the primary key
        // (server_id, id)) then serves the whole ORDER BY in either direction, without a sort of every row
        $dir = $this->dir === 'desc' ? ' DESC' : ' ASC';
        $order = $this->tab['columns'][$this->sort][1] . $dir;
        $select = $db->prepare('SELECT ' . implode(', ', $fields) . $this->from() . $where
            . " ORDER BY $order, t.server_id$dir, t.id$dir LIMIT :limit OFFSET :offset");
        ListParams::run($select, $binds, $limit, $offset);
        return $select;
    }

    private function where(): array
    {
        $clauses = [];
        $binds = [];
        if ($this->q !== '') {
            $text = array_filter(array_values($this->columns), static fn (array $column): bool => $column[2] === 'text');
            $clauses[] = ListParams::anyLike($this->q, array_column($text, 1), $binds);
        }
        if ($this->server !== '') {
            $clauses[] = 't.server_id = :server';
            $binds[':server'] = $this->server;
        }
        if ($this->client !== '') {
            $clauses[] = $this->tab['columns']['client'][1] . ' = :client';
            $binds[':client'] = $this->client;
        }
        return [$clauses ? ' WHERE ' . implode(' AND ', $clauses) : '', $binds];
    }
}
