<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * The history tabs, each a snapshot table shown by the one list component (HistoryQuery, history.php).
 *
 * Per tab: its least web role (mirrors HISTORY_READERS in broker/core/permissions.py: captures, chat and
 * file operations are for operators and up), its table, its default sort, and its columns:
 * key => [label, SQL expression, how]. how: 'text' | 'time' | 'num' | 'bool' | 'sealed:ROLE'.
 * Only 'text' columns are searched by the text filter; every column but a sealed one is sortable
 * (its key is the allowlist: nothing else reaches ORDER BY). A sealed column (sync/web_crypto.py)
 * is selected, opened and shown only for ROLE and up; for anyone else it is not even read.
 */
final class HistoryTabs
{
    private const SERVER = ['Server', "COALESCE(NULLIF(s.name, ''), t.server_id)", 'text'];
    private const CLIENT = ['Client', 't.client_id', 'text'];

    public const TABS = [
        'sessions' => [
            'title' => 'Sessions', 'role' => 'viewer', 'table' => 'snapshot_sessions', 'sort' => 'started',
            'columns' => [
                'started' => ['Started', 't.started', 'time'], 'ended' => ['Ended', 't.ended', 'time'],
                'server' => self::SERVER, 'client' => self::CLIENT, 'user' => ['User', 't.logged_in_user', 'text'],
                'end_reason' => ['End reason', 't.end_reason', 'text'],
            ],
        ],
        'security' => [
            'title' => 'Security', 'role' => 'viewer', 'table' => 'snapshot_security', 'sort' => 'ts',
            'columns' => [
                'ts' => ['Time', 't.ts', 'time'], 'server' => self::SERVER,
                'client' => ['Client', 'COALESCE(t.client_id, t.subject)', 'text'], 'origin' => ['Origin', 't.origin', 'text'],
                'event' => ['Event', 't.event', 'text'], 'severity' => ['Severity', 't.severity', 'text'],
                'detail' => ['Detail', 't.detail', 'text'],
            ],
        ],
        'logs' => [
            'title' => 'Logs', 'role' => 'viewer', 'table' => 'snapshot_client_logs', 'sort' => 'ts',
            'columns' => [
                'ts' => ['Time', 't.ts', 'time'], 'server' => self::SERVER, 'client' => self::CLIENT,
                'level' => ['Level', 't.level', 'text'], 'logger' => ['Logger', 't.logger', 'text'],
                'message' => ['Message', 't.message', 'sealed:viewer'],
            ],
        ],
        'fileops' => [
            'title' => 'File Ops', 'role' => 'operator', 'table' => 'snapshot_fileops', 'sort' => 'ts',
            'columns' => [
                'ts' => ['Time', 't.ts', 'time'], 'server' => self::SERVER, 'client' => self::CLIENT,
                'operator' => ['Operator', 't.operator', 'text'], 'op' => ['Operation', 't.op', 'text'],
                'path' => ['Path', 't.path', 'sealed:operator'], 'size' => ['Size', 't.size', 'num'],
                'ok' => ['OK', 't.ok', 'bool'], 'error' => ['Error', 't.error', 'sealed:operator'],
            ],
        ],
        'messages' => [
            'title' => 'Messages', 'role' => 'operator', 'table' => 'snapshot_messages', 'sort' => 'ts',
            'columns' => [
                'ts' => ['Time', 't.ts', 'time'], 'server' => self::SERVER, 'client' => self::CLIENT,
                'direction' => ['Direction', 't.direction', 'text'], 'operator' => ['Operator', 't.operator', 'text'],
                'body' => ['Text', 't.body', 'sealed:operator'], 'status' => ['Status', 't.status', 'text'],
            ],
        ],
        'captures' => [
            'title' => 'Captures', 'role' => 'operator', 'table' => 'snapshot_captures', 'sort' => 'ts',
            'columns' => [
                'ts' => ['Time', 't.ts', 'time'], 'server' => self::SERVER, 'client' => self::CLIENT,
                'operator' => ['Operator', 't.operator', 'text'], 'width' => ['Width', 't.width', 'num'],
                'height' => ['Height', 't.height', 'num'], 'format' => ['Format', 't.format', 'text'],
                'quality' => ['Quality', 't.quality', 'num'],
            ],
        ],
    ];

    /** The tab's spec; an unknown name is a programming error. */
    public static function get(string $name): array
    {
        return self::TABS[$name] ?? throw new \LogicException('no history tab ' . $name);
    }

    /** The least role that may read a sealed column, or null when the column is not sealed. */
    public static function sealedRole(array $column): ?string
    {
        return str_starts_with($column[2], 'sealed:') ? substr($column[2], 7) : null;
    }

    /** The tab's columns this user may see (sealed ones above their role are left out entirely). */
    public static function visibleColumns(array $tab, ?array $user): array
    {
        return array_filter($tab['columns'], static function (array $column) use ($user): bool {
            $role = self::sealedRole($column);
            return $role === null || Auth::allows($user, $role);
        });
    }
}
