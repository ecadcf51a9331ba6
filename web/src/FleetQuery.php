<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Fleet view's numbers, each from one aggregate query over snapshot_clients / servers (every server's):
 * online and offline per server, CPU / memory / disk in ten 10 % buckets, the OS mix, how long ago clients
 * were last seen, the clients not seen for more than N days, and each server's sync lag.
 */
final class FleetQuery
{
    /** the "not seen for more than N days" choices (GET days) */
    public const DAYS = [1, 7, 30, 90];
    public const METRICS = ['cpu' => 'CPU', 'memory' => 'Memory', 'disk' => 'Disk'];
    /** the OS mix shows this many names, the rest as "other" */
    public const OS_SHOWN = 8;
    public const STALE_SHOWN = 10;
    /** last-seen age buckets: label => [from, to) in days */
    public const AGES = ['under 1 day' => [0, 1], '1–7 days' => [1, 7], '7–30 days' => [7, 30], '30 days or more' => [30, null]];
    private const DAY_S = 86400;

    public int $days = 7;

    public static function fromRequest(array $params): self
    {
        $query = new self();
        $days = is_string($params['days'] ?? null) && ctype_digit($params['days']) ? (int) $params['days'] : 0;
        $query->days = in_array($days, self::DAYS, true) ? $days : 7;
        return $query;
    }

    /** [server name => ['online' => n, 'offline' => n]], by name. */
    public function onlineByServer(PDO $db): array
    {
        $rows = $db->query("SELECT COALESCE(NULLIF(s.name, ''), c.server_id) AS name, SUM(c.online <> 0) AS online,
                SUM(c.online = 0) AS offline
            FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id
            GROUP BY c.server_id, name ORDER BY name, c.server_id")->fetchAll();
        $out = [];
        foreach ($rows as $row) {
            $out[] = [$row['name'], (int) $row['online'], (int) $row['offline']];
        }
        return $out;
    }

    /** [metric => [bucket 0..9 => clients]] plus [metric => clients with no figure], in one pass. */
    public function histograms(PDO $db): array
    {
        $bucket = static fn (string $v): string => "LEAST(9, GREATEST(0, FLOOR($v / 10)))";
        $rows = $db->query('SELECT ' . $bucket('cpu') . ' AS cpu, ' . $bucket('memory') . ' AS memory, ' . $bucket('disk')
            . " AS disk, COUNT(*) AS n FROM (SELECT CAST(JSON_VALUE(sysinfo, '$.cpu_percent') AS DOUBLE) AS cpu,
                    CAST(JSON_VALUE(sysinfo, '$.memory_percent') AS DOUBLE) AS memory,
                    CAST(JSON_VALUE(sysinfo, '$.disk_percent') AS DOUBLE) AS disk FROM snapshot_clients) m
              GROUP BY cpu, memory, disk")->fetchAll();
        $counts = [];
        $missing = [];
        foreach (array_keys(self::METRICS) as $metric) {
            $counts[$metric] = array_fill(0, 10, 0);
            $missing[$metric] = 0;
        }
        foreach ($rows as $row) {
            foreach (array_keys(self::METRICS) as $metric) {
                if ($row[$metric] === null) {
                    $missing[$metric] += (int) $row['n'];
                } else {
                    $counts[$metric][(int) $row[$metric]] += (int) $row['n'];
                }
            }
        }
        return [$counts, $missing];
    }

    /** [[os name, clients]], the most common first, the rest summed as "other". */
    public function osMix(PDO $db): array
    {
        $rows = $db->query("SELECT COALESCE(NULLIF(os, ''), 'unknown') AS os, COUNT(*) AS n FROM snapshot_clients
            GROUP BY 1 ORDER BY n DESC, os")->fetchAll();
        $out = [];
        $other = 0;
        foreach ($rows as $i => $row) {
            if ($i < self::OS_SHOWN) {
                $out[] = [$row['os'], (int) $row['n']];
            } else {
                $other += (int) $row['n'];
            }
        }
        if ($other > 0) {
            $out[] = ['other', $other];
        }
        return $out;
    }

    /** [[age label, clients]] by how long ago each client was last seen. */
    public function lastSeenAges(PDO $db, float $now): array
    {
        $sums = [];
        $binds = [];
        foreach (array_values(self::AGES) as $i => [$from, $to]) {
            $conditions = [];  // the buckets cover every row: the first has no upper end, the last no lower one
            if ($from > 0) {
                $conditions[] = "last_seen <= :from$i";
                $binds[":from$i"] = $now - $from * self::DAY_S;
            }
            if ($to !== null) {
                $conditions[] = "last_seen > :to$i";
                $binds[":to$i"] = $now - $to * self::DAY_S;
            }
            $sums[] = 'COALESCE(SUM(' . implode(' AND ', $conditions) . "), 0) AS a$i";
        }
        $select = $db->prepare('SELECT ' . implode(', ', $sums) . ' FROM snapshot_clients');
        $select->execute($binds);
        $row = $select->fetch(PDO::FETCH_NUM);
        $out = [];
        foreach (array_keys(self::AGES) as $i => $label) {
            $out[] = [$label, (int) $row[$i]];
        }
        return $out;
    }

    /** [clients not seen for more than $this->days days, [[host, server, days since seen], ...] the longest first]. */
    public function stale(PDO $db, float $now): array
    {
        $cutoff = $now - $this->days * self::DAY_S;
        $count = $db->prepare('SELECT COUNT(*) FROM snapshot_clients WHERE last_seen < :cutoff');
        $count->execute([':cutoff' => $cutoff]);
        $select = $db->prepare("SELECT COALESCE(NULLIF(c.hostname, ''), NULLIF(c.label, ''), c.client_id) AS host,
                COALESCE(NULLIF(s.name, ''), c.server_id) AS server, c.last_seen
            FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id
            WHERE c.last_seen < :cutoff ORDER BY c.last_seen ASC, c.server_id, c.client_id LIMIT " . self::STALE_SHOWN);
        $select->execute([':cutoff' => $cutoff]);
        $rows = [];
        foreach ($select->fetchAll() as $row) {
            $rows[] = [$row['host'], $row['server'], ($now - (float) $row['last_seen']) / self::DAY_S];
        }
        return [(int) $count->fetchColumn(), $rows];
    }

    /** [[server name, seconds since its last sync or null (never)]], by name. */
    public function syncLag(PDO $db, float $now): array
    {
        $rows = $db->query("SELECT COALESCE(NULLIF(name, ''), server_id) AS name, last_sync FROM servers ORDER BY name, server_id")->fetchAll();
        return array_map(static fn (array $row): array => [$row['name'],
            $row['last_sync'] === null ? null : max(0.0, $now - (float) $row['last_sync'])], $rows);
    }
}
