<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Clients tab's query over snapshot_clients (every server's, named from `servers`): a text
 * filter, an online/offline filter, sorting on an allowlist of columns and server-side paging.
 */
final class ClientsQuery
{
    /** sort key (what the URL says) -> SQL expression; nothing else ever reaches ORDER BY */
    public const SORTS = [
        'server' => 'server_name',
        'host' => 'c.hostname',
        'client' => 'c.client_id',
        'user' => 'c.logged_in_user',
        'os' => 'c.os',
        'online' => 'c.online',
        'cpu' => 'cpu',
        'memory' => 'memory',
        'disk' => 'disk',
        'last_seen' => 'c.last_seen',
    ];
    public const PAGE_SIZES = ListParams::PAGE_SIZES;
    private const FILTERED = ['c.hostname', 'c.label', 'c.client_id', 'c.logged_in_user', 'c.os', 's.name'];

    public string $q = '';
    public string $state = 'all';
    public string $sort = 'server';
    public string $dir = 'asc';
    public int $page = 1;
    public int $perPage = ListParams::DEFAULT_PER_PAGE;

    /** The query from request parameters; anything not allowed falls back to the default. */
    public static function fromRequest(array $params): self
    {
        $query = new self();
        $query->q = ListParams::filter($params);
        $query->state = in_array(ListParams::text($params, 'state'), ['online', 'offline'], true) ? $params['state'] : 'all';
        $query->sort = ListParams::sort($params, array_keys(self::SORTS), 'server');
        $query->dir = ListParams::dir($params, 'asc');
        $query->page = ListParams::page($params);
        $query->perPage = ListParams::perPage($params);
        return $query;
    }

    /** The URL parameters that reproduce this query. */
    public function params(): array
    {
        return ['q' => $this->q, 'state' => $this->state, 'sort' => $this->sort, 'dir' => $this->dir,
            'page' => $this->page, 'per' => $this->perPage];
    }

    /** [rows of this page, total matching rows] */
    public function run(PDO $db): array
    {
        [$where, $binds] = $this->where();
        $from = ' FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id' . $where;
        $count = $db->prepare('SELECT COUNT(*)' . $from);
        $count->execute($binds);
        $total = (int) $count->fetchColumn();
        $this->page = min($this->page, ListParams::pages($total, $this->perPage));
        $order = self::SORTS[$this->sort] . ($this->dir === 'desc' ? ' DESC' : ' ASC');
        $select = $db->prepare(
            "SELECT c.server_id, COALESCE(NULLIF(s.name, ''), c.server_id) AS server_name, c.client_id, c.label, c.hostname,
                    c.os, c.os_version, c.logged_in_user, c.version, c.online, c.last_seen,
                    CAST(JSON_VALUE(c.sysinfo, '$.cpu_percent') AS DOUBLE) AS cpu,
                    CAST(JSON_VALUE(c.sysinfo, '$.memory_percent') AS DOUBLE) AS memory,
                    CAST(JSON_VALUE(c.sysinfo, '$.disk_percent') AS DOUBLE) AS disk"
            . $from . " ORDER BY $order, c.server_id ASC, c.client_id ASC LIMIT :limit OFFSET :offset"
        );
        ListParams::run($select, $binds, $this->perPage, ($this->page - 1) * $this->perPage);
        return [$select->fetchAll(), $total];
    }

    private function where(): array
    {
        $clauses = [];
        $binds = [];
        if ($this->q !== '') {
            $clauses[] = ListParams::anyLike($this->q, self::FILTERED, $binds);
        }
        if ($this->state !== 'all') {
            $clauses[] = 'c.online = :online';
            $binds[':online'] = $this->state === 'online' ? 1 : 0;
        }
        return [$clauses ? ' WHERE ' . implode(' AND ', $clauses) : '', $binds];
    }
}
