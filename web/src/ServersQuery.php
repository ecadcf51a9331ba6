<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** The Servers tab's reads: every server with its sync state, and one server's clients a page at a time. */
final class ServersQuery
{
    public const PER_PAGE = 50;
    /** a server not synced for this long is shown as stale */
    public const STALE_S = 600;

    /** Every server: id, name, version, web_key_id, last_sync, last_full_sync, syncing, rows_synced, clients, online, state. */
    public static function servers(PDO $db): array
    {
        $rows = $db->query(
            "SELECT s.server_id, COALESCE(NULLIF(s.name, ''), s.server_id) AS name, s.version, s.web_key_id,
                    GREATEST(COALESCE(s.last_sync, 0), COALESCE(st.updated, 0)) AS last_sync,
                    GREATEST(COALESCE(s.last_full_sync, 0), COALESCE(st.last_full, 0)) AS last_full_sync,
                    COALESCE(st.syncing, 0) AS syncing, COALESCE(st.rows_synced, 0) AS rows_synced,
                    (SELECT COUNT(*) FROM snapshot_clients c WHERE c.server_id = s.server_id) AS clients,
                    (SELECT COALESCE(SUM(c.online), 0) FROM snapshot_clients c WHERE c.server_id = s.server_id) AS online
             FROM servers s LEFT JOIN (
                 SELECT server_id, MAX(updated) AS updated, MAX(last_full_sync) AS last_full, SUM(full_done = 0) > 0 AS syncing,
                        SUM(rows_synced) AS rows_synced FROM sync_state GROUP BY server_id
             ) st ON st.server_id = s.server_id
             ORDER BY name, s.server_id"
        )->fetchAll();
        foreach ($rows as &$row) {
            $row['state'] = self::state($row);
        }
        return $rows;
    }

    private static function state(array $row): string
    {
        if ((int) $row['syncing']) {
            return 'syncing';
        }
        if ((float) $row['last_sync'] <= 0) {
            return 'never synced';
        }
        return microtime(true) - (float) $row['last_sync'] > self::STALE_S ? 'stale' : 'up to date';
    }

    /** [rows, total] of one server's clients, by host name, $page (1-based) of PER_PAGE. */
    public static function clients(PDO $db, string $serverId, int $page): array
    {
        $count = $db->prepare('SELECT COUNT(*) FROM snapshot_clients WHERE server_id = :server');
        $count->execute([':server' => $serverId]);
        $total = (int) $count->fetchColumn();
        $select = $db->prepare(
            'SELECT client_id, label, hostname, os, os_version, logged_in_user, online, last_seen FROM snapshot_clients
             WHERE server_id = :server ORDER BY hostname, client_id LIMIT :limit OFFSET :offset'
        );
        $select->bindValue(':server', $serverId);
        $select->bindValue(':limit', self::PER_PAGE, PDO::PARAM_INT);
        $select->bindValue(':offset', (max(1, $page) - 1) * self::PER_PAGE, PDO::PARAM_INT);
        $select->execute();
        return [$select->fetchAll(), $total];
    }

    /** The page (of clients()) that lists $clientId on $serverId, or null when that server has no such client. */
    public static function pageOf(PDO $db, string $serverId, string $clientId): ?int
    {
        $find = $db->prepare(
            'SELECT n FROM (SELECT client_id, ROW_NUMBER() OVER (ORDER BY hostname, client_id) AS n FROM snapshot_clients
             WHERE server_id = :server) numbered WHERE client_id = :client'
        );
        $find->execute([':server' => $serverId, ':client' => $clientId]);
        $n = $find->fetchColumn();
        return $n === false ? null : intdiv((int) $n - 1, self::PER_PAGE) + 1;
    }
}
