<?php
/** The Schedules view (inside operations.php): every schedule with its next run; operators add one (a template with
 *  its parameters, a selector, cron or one time, zone, missed policy, reason) and pause, resume or remove their own. */
use Ems\Web\Session;

$stateBadge = ['enabled' => 'success', 'paused' => 'warning', 'done' => 'secondary'];
$templates = $templates ?? [];
?>
<p class="small text-body-secondary">Runs the broker starts at a time or on a cron expression, as the person who made
  them, with the schedule's reason. Only that person (or an admin key: ems schedule) pauses, resumes or removes one.</p>
<?php if ($canAct): ?>
  <?php require __DIR__ . '/ops_schedule_form.php'; ?>
<?php endif; ?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="schedules-table">
  <thead><tr><th>Schedule</th><th>State</th><th>Runs</th><th>When</th><th>Next run</th><th>Last run</th><th>Owner</th><th></th></tr></thead>
  <tbody>
  <?php foreach ($rows as $s): ?>
    <tr data-id="<?= e($s['id']) ?>" class="ems-schedule">
      <td><?= e($s['name']) ?><div class="small text-body-secondary"><?= e($s['reason']) ?></div></td>
      <td><span class="badge text-bg-<?= e($stateBadge[$s['state']] ?? 'secondary') ?>"><?= e($s['state']) ?></span>
        <?php if (($s['why'] ?? '') !== ''): ?><div class="small text-warning-emphasis"><?= e($s['why']) ?></div><?php endif; ?></td>
      <td class="font-monospace small"><?= e($s['op']) ?><?= isset($s['args']['name']) ? ' ' . e($s['args']['name']) : '' ?></td>
      <td class="font-monospace small"><?= e($s['cron'] !== '' ? $s['cron'] : 'once') ?> <span class="text-body-secondary">(<?= e($s['tz']) ?>, missed: <?= e($s['missed']) ?>)</span></td>
      <td class="small text-nowrap ems-next"><?= e($s['state'] === 'enabled' ? ($s['next_due_text'] ?: '—') : '— (' . $s['state'] . ')') ?></td>
      <td class="small ems-last"><?= e($when($s['last_slot'])) ?><?php if (($s['last_outcome'] ?? '') !== ''): ?><div class="text-body-secondary"><?= e($s['last_outcome']) ?></div><?php endif; ?></td>
      <td><?= e($s['owner_name']) ?></td>
      <td class="ems-schedule-actions">
      <?php if ($canAct && $s['owner_name'] === $me && $s['state'] !== 'done'): ?>
        <form method="post" action="/operations/schedule-change" class="d-flex gap-1">
          <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
          <input type="hidden" name="id" value="<?= e($s['id']) ?>">
          <input class="form-control form-control-sm" type="text" name="reason" maxlength="<?= e($maxReason) ?>" required
                 placeholder="Reason (audited)" aria-label="Reason for changing <?= e($s['name']) ?>">
          <button type="submit" name="action" value="<?= $s['enabled'] ? 'pause' : 'resume' ?>"
                  class="btn btn-sm btn-outline-secondary ems-<?= $s['enabled'] ? 'pause' : 'resume' ?>"><?= $s['enabled'] ? 'Pause' : 'Resume' ?></button>
          <button type="submit" name="action" value="remove" class="btn btn-sm btn-outline-danger ems-remove">Remove</button>
        </form>
      <?php endif; ?>
      </td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="8" class="text-center text-body-secondary py-4">No schedules yet<?= $canAct ? ': add one above' : '' ?>.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
