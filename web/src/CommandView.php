<?php
declare(strict_types=1);

namespace Ems\Web;

/** A command record from the admin API as a person reads it: its status, and its result in one sentence. */
final class CommandView
{
    public const FINAL = ['done', 'failed', 'expired'];

    /** {id, name, status, final, summary, dry_run, update_count, updates} for the browser (no args: they stay on the server). */
    public static function of(array $record): array
    {
        $status = (string) ($record['status'] ?? 'unknown');
        $outcome = is_array($record['result'] ?? null) ? $record['result'] : [];  // {ok, output} or {ok: false, error}
        $result = is_array($outcome['output'] ?? null) ? $outcome['output'] : [];
        $result['error'] = self::error($outcome['error'] ?? null);
        return ['id' => (string) ($record['id'] ?? ''), 'name' => (string) ($record['name'] ?? ''), 'status' => $status,
            'final' => in_array($status, self::FINAL, true), 'dry_run' => !empty($result['dry_run']),
            'summary' => self::summary($status, $result),
            'update_count' => isset($result['update_count']) ? (int) $result['update_count'] : null,
            'updates' => is_array($result['updates'] ?? null)
                ? array_map(static fn (mixed $u): string => is_scalar($u) ? (string) $u : '', array_slice($result['updates'], 0, 100)) : []];
    }

    /** An agent's error (text, or {code, message}) as text. */
    private static function error(mixed $error): string
    {
        if (is_array($error)) {
            $error = $error['message'] ?? $error['detail'] ?? $error['code'] ?? '';
        }
        return is_scalar($error) ? (string) $error : '';
    }

    private static function summary(string $status, array $result): string
    {
        if ($status === 'failed' || $status === 'expired') {
            $why = $result['error'];
            return ($status === 'expired' ? 'Expired before the client took it' : 'Failed') . ($why !== '' ? ': ' . $why : '.');
        }
        if ($status !== 'done') {
            return ['queued' => 'Queued: waiting for the client.', 'sent' => 'Sent to the client.',
                'delivered' => 'Delivered: the client is working on it.'][$status] ?? ucfirst($status) . '.';
        }
        $parts = [];
        if (isset($result['update_count'])) {
            $count = (int) $result['update_count'];
            $parts[] = $count === 1 ? '1 update pending' : $count . ' updates pending';
            if (!empty($result['updates']) && is_array($result['updates'])) {
                $parts[] = implode(', ', array_map('strval', array_slice($result['updates'], 0, 10)));
            }
        } elseif (isset($result['delay_s'])) {
            $parts[] = 'ordered, in ' . (int) $result['delay_s'] . ' s';
        }
        if (!empty($result['dry_run'])) {
            $parts[] = 'DRY RUN: nothing was run on the client';
        }
        return 'Done' . ($parts ? ': ' . implode('; ', $parts) : '.');
    }
}
