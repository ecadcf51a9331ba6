<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Updates tab's storage: the client selection (every server's clients, filtered and paged on the server),
 * and the update batches (a check over many clients, or a rollout in waves) in web_update_batches/_targets.
 */
final class UpdatesQuery
{
    public const PER_PAGE = 50;
    /** the most clients one check or rollout may hold */
    public const MAX_TARGETS = 10000;
    /** the most targets one answer to the page lists (the counts always cover all) */
    public const MAX_LISTED = 2000;
    private const FILTERED = ['c.hostname', 'c.label', 'c.client_id', 'c.logged_in_user', 'c.os', 's.name'];

    public string $server = '';
    public string $q = '';
    public int $page = 1;

    /** The selection filter from request parameters (GET on the page, POST with "all matching"). */
    public static function fromParams(array $params): self
    {
        $get = static fn (string $name): string => is_string($params[$name] ?? null) ? $params[$name] : '';
        $query = new self();
        $query->server = (string) iconv_substr($get('server'), 0, 64);
        $query->q = (string) iconv_substr(trim($get('q')), 0, 200);
        $query->page = max(1, min(1000000, (int) $get('page')));
        return $query;
    }

    public function params(): array
    {
        return ['server' => $this->server, 'q' => $this->q, 'page' => $this->page];
    }

    /** [rows of this page, total matching] */
    public function page(PDO $db): array
    {
        [$where, $binds] = $this->where();
        $total = self::count($db, $where, $binds);
        $this->page = min($this->page, max(1, (int) ceil($total / self::PER_PAGE)));
        return [self::select($db, $where, $binds, self::PER_PAGE, ($this->page - 1) * self::PER_PAGE), $total];
    }

    /** Every matching client (at most MAX_TARGETS + 1, so the caller can tell "too many"). */
    public function all(PDO $db): array
    {
        [$where, $binds] = $this->where();
        return self::select($db, $where, $binds, self::MAX_TARGETS + 1, 0);
    }

    /** The clients named by [server_id, client_id] pairs, in that order; [found, unknown pairs]. */
    public static function named(PDO $db, array $pairs): array
    {
        $found = [];
        foreach (array_chunk($pairs, 200) as $chunk) {
            $any = [];
            $binds = [];
            foreach ($chunk as $i => [$server, $client]) {
                $any[] = "(c.server_id = :s$i AND c.client_id = :c$i)";
                $binds[":s$i"] = $server;
                $binds[":c$i"] = $client;
            }
            foreach (self::select($db, ' WHERE ' . implode(' OR ', $any), $binds, count($chunk), 0) as $row) {
                $found[$row['server_id'] . "\n" . $row['client_id']] = $row;
            }
        }
        $rows = [];
        $unknown = [];
        foreach ($pairs as [$server, $client]) {
            $row = $found[$server . "\n" . $client] ?? null;
            if ($row === null) {
                $unknown[] = $client;
            } else {
                $rows[] = $row;
            }
        }
        return [$rows, $unknown];
    }

    private static function count(PDO $db, string $where, array $binds): int
    {
        $count = $db->prepare('SELECT COUNT(*) FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id' . $where);
        $count->execute($binds);
        return (int) $count->fetchColumn();
    }

    private static function select(PDO $db, string $where, array $binds, int $limit, int $offset): array
    {
        $select = $db->prepare(
            "SELECT c.server_id, COALESCE(NULLIF(s.name, ''), c.server_id) AS server_name, c.client_id,
                    COALESCE(NULLIF(c.hostname, ''), NULLIF(c.label, ''), c.client_id) AS hostname, c.os, c.os_version, c.online
             FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id" . $where
            . ' ORDER BY server_name, c.server_id, hostname, c.client_id LIMIT :limit OFFSET :offset'
        );
        foreach ($binds as $name => $value) {
            $select->bindValue($name, $value);
        }
        $select->bindValue(':limit', $limit, PDO::PARAM_INT);
        $select->bindValue(':offset', $offset, PDO::PARAM_INT);
        $select->execute();
        return $select->fetchAll();
    }

    private function where(): array
    {
        $clauses = [];
        $binds = [];
        if ($this->server !== '') {
            $clauses[] = 'c.server_id = :server';
            $binds[':server'] = $this->server;
        }
        if ($this->q !== '') {
            $clauses[] = ListParams::anyLike($this->q, self::FILTERED, $binds);
        }
        return [$clauses ? ' WHERE ' . implode(' AND ', $clauses) : '', $binds];
    }

    /**
     * A new batch over $clients (rows with server_id, client_id, hostname): its id. $plan is
     * [action, first wave, wave size, failures that stop it, source batch or null]; the waves follow from it.
     */
    public static function create(PDO $db, array $user, string $operator, string $reason, array $plan, array $clients): int
    {
        [$action, $first, $size, $stopAt, $source] = $plan;
        $count = count($clients);
        $waves = $count <= $first ? 1 : 1 + (int) ceil(($count - $first) / $size);
        $now = microtime(true);
        $db->beginTransaction();
        try {
            $db->prepare(
                "INSERT INTO web_update_batches (action, user_id, operator, reason, source_batch, first_wave, wave_size,
                     stop_failures, waves, current_wave, state, created, updated)
                 VALUES (:action, :user, :operator, :reason, :source, :first, :size, :stop, :waves, 1, 'running', :now, :now2)"
            )->execute([':action' => $action, ':user' => (int) $user['id'], ':operator' => $operator, ':reason' => $reason,
                ':source' => $source, ':first' => $first, ':size' => $size, ':stop' => $stopAt, ':waves' => $waves,
                ':now' => $now, ':now2' => $now]);
            $id = (int) $db->lastInsertId();
            foreach (array_chunk($clients, 200, true) as $chunk) {
                $values = [];
                $binds = [];
                foreach ($chunk as $position => $row) {
                    $wave = $position < $first ? 1 : 2 + intdiv($position - $first, $size);
                    // each placeholder once: real prepared statements (no emulation) cannot repeat a name
                    $values[] = "(:b$position, :p$position, :s$position, :c$position, :h$position, :w$position, 'waiting', :t$position)";
                    $binds += [":b$position" => $id, ":t$position" => $now, ":p$position" => $position, ":s$position" => $row['server_id'], ":c$position" => $row['client_id'],
                        ":h$position" => (string) iconv_substr((string) $row['hostname'], 0, 255), ":w$position" => $wave];
                }
                $db->prepare('INSERT INTO web_update_targets (batch_id, position, server_id, client_id, hostname, wave, status, updated)
                              VALUES ' . implode(', ', $values))->execute($binds);
            }
            $db->commit();
        } catch (\Throwable $exc) {
            $db->rollBack();
            throw $exc;
        }
        return $id;
    }

    public static function batch(PDO $db, int $id): ?array
    {
        $find = $db->prepare('SELECT * FROM web_update_batches WHERE id = :id');
        $find->execute([':id' => $id]);
        return $find->fetch() ?: null;
    }

    /** The web user who started a batch (id, username, display_name, role), or null if the account is disabled or gone. */
    public static function starter(PDO $db, int $userId): ?array
    {
        $find = $db->prepare('SELECT id, username, display_name, role FROM web_users WHERE id = :id AND disabled = 0');
        $find->execute([':id' => $userId]);
        return $find->fetch() ?: null;
    }

    /** The most recent batches, newest first. */
    public static function recent(PDO $db, int $limit = 20): array
    {
        $list = $db->prepare(
            "SELECT b.id, b.action, b.operator, b.reason, b.state, b.waves, b.current_wave, b.created,
                    (SELECT COUNT(*) FROM web_update_targets t WHERE t.batch_id = b.id) AS clients
             FROM web_update_batches b ORDER BY b.id DESC LIMIT :limit"
        );
        $list->bindValue(':limit', $limit, PDO::PARAM_INT);
        $list->execute();
        return $list->fetchAll();
    }

    /** A batch's targets in order: all of one wave, or the first MAX_LISTED of every wave. */
    public static function targets(PDO $db, int $id, ?int $wave = null): array
    {
        $list = $db->prepare(
            'SELECT position, server_id, client_id, hostname, wave, status, command_id, summary, dry_run, update_count, updates, updated
             FROM web_update_targets WHERE batch_id = :id' . ($wave === null ? '' : ' AND wave = :wave')
            . ' ORDER BY position LIMIT :limit'
        );
        $list->bindValue(':id', $id, PDO::PARAM_INT);
        if ($wave !== null) {
            $list->bindValue(':wave', $wave, PDO::PARAM_INT);
        }
        $list->bindValue(':limit', $wave === null ? self::MAX_LISTED : self::MAX_TARGETS, PDO::PARAM_INT);
        $list->execute();
        return $list->fetchAll();
    }

    /** status -> how many of the batch's targets have it */
    public static function counts(PDO $db, int $id): array
    {
        $count = $db->prepare('SELECT status, COUNT(*) AS n FROM web_update_targets WHERE batch_id = :id GROUP BY status');
        $count->execute([':id' => $id]);
        return array_map('intval', array_column($count->fetchAll(), 'n', 'status'));
    }
}
