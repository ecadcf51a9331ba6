<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * One step of an update batch (a check, or a rollout in waves): send the current wave's commands through the
 * admin API, read back their status, and when the wave is over either start the next one, stop (a wave with
 * stop_failures failures), or finish. Nothing else moves a batch: the Updates page POSTs /updates/step while
 * an operator watches it.
 *
 * Safe when two pages step at once: a step first takes the batch's lease (one UPDATE that only succeeds when no
 * other step holds it); without it, it changes nothing and only reports. A command is marked "sending" before
 * it is sent, so a step that died in the middle never sends it twice: later steps mark it "lost" instead.
 */
final class Rollout
{
    /** how long a step may hold a batch */
    public const LEASE_S = 120;
    /** a step stops sending and asking after this long (the next step goes on) */
    public const BUDGET_S = 8.0;
    /** the statuses after which a target's outcome is known */
    public const FINAL = ['done', 'failed', 'expired', 'error', 'lost', 'skipped'];
    /** the final statuses that count as a failure of the wave */
    public const FAILURES = ['failed', 'expired', 'error', 'lost'];
    public const LOST = 'The web lost track of this command while sending it (it may or may not have gone out): see the Servers tab.';

    private string $token;
    private float $started;

    public function __construct(private readonly PDO $db, private readonly AdminApi $api, private readonly array $user)
    {
        $this->token = bin2hex(random_bytes(16));
        $this->started = microtime(true);
    }

    /** Advance batch $id if no other step holds it; true if this step held it. */
    public function step(int $id): bool
    {
        $take = $this->db->prepare(
            "UPDATE web_update_batches SET lease_token = :token, lease_until = :until
             WHERE id = :id AND state = 'running' AND lease_until < :now"
        );
        $take->execute([':token' => $this->token, ':until' => $this->started + self::LEASE_S, ':id' => $id, ':now' => $this->started]);
        if ($take->rowCount() !== 1) {
            return false;
        }
        ignore_user_abort(true);  // a closed tab must not stop a step between a send and its record
        try {
            $batch = UpdatesQuery::batch($this->db, $id);
            $wave = (int) $batch['current_wave'];
            $this->advance($batch, UpdatesQuery::targets($this->db, $id, $wave));
            $this->decide($batch, UpdatesQuery::targets($this->db, $id, $wave));
        } finally {
            $this->db->prepare("UPDATE web_update_batches SET lease_token = '', lease_until = 0 WHERE id = :id AND lease_token = :token")
                ->execute([':id' => $id, ':token' => $this->token]);
        }
        return true;
    }

    /** Send what waits, ask about what is open, within the time budget; stops early when the admin API is away. */
    private function advance(array $batch, array $targets): void
    {
        foreach ($targets as $target) {
            if (microtime(true) - $this->started > self::BUDGET_S) {
                return;
            }
            $status = $target['status'];
            if ($status === 'waiting') {
                $ok = $this->send($batch, $target);
            } elseif ($status === 'sending') {
                $ok = true;
                if ((float) $target['updated'] < microtime(true) - self::LEASE_S) {
                    $this->record($batch, $target, ['status' => 'lost', 'summary' => self::LOST]);
                }
            } elseif (!in_array($status, self::FINAL, true) && $target['command_id'] !== null) {
                [$code, $answer] = $this->api->call('GET', '/api/commands/' . rawurlencode($target['command_id']), null, $this->user);
                $ok = $code !== 0;
                if ($code === 200) {
                    $this->record($batch, $target, CommandView::of($answer));
                }
            } else {
                $ok = true;
            }
            if (!$ok) {
                return;
            }
        }
    }

    /** Send one target's command; false when the admin API did not answer (it stays waiting). */
    private function send(array $batch, array $target): bool
    {
        $mark = $this->db->prepare(
            "UPDATE web_update_targets SET status = 'sending', updated = :now WHERE batch_id = :id AND position = :p AND status = 'waiting'"
        );
        $mark->execute([':now' => microtime(true), ':id' => (int) $batch['id'], ':p' => (int) $target['position']]);
        if ($mark->rowCount() !== 1) {
            return true;
        }
        $path = '/api/clients/' . rawurlencode($target['client_id']) . '/' . $batch['action'];
        [$code, $answer] = $this->api->call('POST', $path, ['reason' => $batch['reason']], $this->user);
        if ($code === 0) {
            $this->record($batch, $target, ['status' => 'waiting', 'summary' => (string) ($answer['error'] ?? '')]);
            return false;
        }
        if ($code >= 300) {
            $refusal = (string) ($answer['error'] ?? 'refused') . (!empty($answer['hint']) ? ' (' . $answer['hint'] . ')' : '');
            $this->record($batch, $target, ['status' => 'error', 'summary' => 'The admin API refused: ' . $refusal,
                'id' => (string) ($answer['id'] ?? '')]);
            return true;
        }
        $this->record($batch, $target, CommandView::of($answer));
        return true;
    }

    /** Write what is known of a target (a CommandView, or status + summary). */
    private function record(array $batch, array $target, array $view): void
    {
        $updates = $view['updates'] ?? null;
        $this->db->prepare(
            'UPDATE web_update_targets SET status = :status, command_id = COALESCE(:command, command_id), summary = :summary,
                 dry_run = :dry, update_count = :count, updates = :updates, updated = :now
             WHERE batch_id = :id AND position = :p'
        )->execute([':status' => (string) $view['status'], ':command' => ($view['id'] ?? '') !== '' ? $view['id'] : null,
            ':summary' => (string) ($view['summary'] ?? ''), ':dry' => !empty($view['dry_run']) ? 1 : 0,
            ':count' => $view['update_count'] ?? null, ':updates' => is_array($updates) ? json_encode($updates) : null,
            ':now' => microtime(true), ':id' => (int) $batch['id'], ':p' => (int) $target['position']]);
    }

    /** When every target of the current wave is final: the next wave, a stop, or the end. */
    private function decide(array $batch, array $targets): void
    {
        $statuses = array_column($targets, 'status');
        if (array_diff($statuses, self::FINAL)) {
            return;
        }
        $wave = (int) $batch['current_wave'];
        $failures = count(array_intersect($statuses, self::FAILURES));
        $last = $wave >= (int) $batch['waves'];
        $stop = $failures >= (int) $batch['stop_failures'];
        $note = null;
        if ($stop) {
            $note = sprintf('Wave %d had %d failure%s (the limit is %d)', $wave, $failures, $failures === 1 ? '' : 's',
                (int) $batch['stop_failures']) . ($last ? '.' : ': the later waves were not started.');
            $this->db->prepare("UPDATE web_update_targets SET status = 'skipped', summary = :why, updated = :now
                                WHERE batch_id = :id AND wave > :wave AND status = 'waiting'")
                ->execute([':why' => 'Not started: the rollout stopped after wave ' . $wave . '.', ':now' => microtime(true),
                    ':id' => (int) $batch['id'], ':wave' => $wave]);
        }
        $state = $stop ? 'stopped' : ($last ? 'done' : 'running');
        $this->db->prepare(
            'UPDATE web_update_batches SET state = :state, current_wave = :next, note = COALESCE(:note, note), updated = :now
             WHERE id = :id AND lease_token = :token'
        )->execute([':state' => $state, ':next' => $state === 'running' ? $wave + 1 : $wave, ':note' => $note,
            ':now' => microtime(true), ':id' => (int) $batch['id'], ':token' => $this->token]);
    }
}
