<?php
/** The Schedules view (inside operations.php): every schedule with when it runs next and how its last slot went. */
$stateBadge = ['enabled' => 'success', 'paused' => 'warning', 'done' => 'secondary'];
?>
<p class="small text-body-secondary">Runs the broker starts at a time or on a cron expression, as the person who made
  them. They are made, paused, resumed and removed with an operator key: <span class="font-monospace">ems schedule add|pause|resume|remove</span>
  (a schedule runs later as its owner's key, which a web person does not have).</p>
<div class="table-responsive">
<table class="table table-sm align-middle" id="schedules-table">
  <thead><tr><th>Schedule</th><th>State</th><th>Runs</th><th>When</th><th>Next run</th><th>Last slot</th><th>Owner</th></tr></thead>
  <tbody>
  <?php foreach ($rows as $s): ?>
    <tr data-id="<?= e($s['id']) ?>" class="ems-schedule">
      <td><?= e($s['name']) ?><div class="small text-body-secondary"><?= e($s['reason']) ?></div></td>
      <td><span class="badge text-bg-<?= e($stateBadge[$s['state']] ?? 'secondary') ?>"><?= e($s['state']) ?></span>
        <?php if (($s['why'] ?? '') !== ''): ?><div class="small text-warning-emphasis"><?= e($s['why']) ?></div><?php endif; ?></td>
      <td class="font-monospace small"><?= e($s['op']) ?><?= isset($s['args']['name']) ? ' ' . e($s['args']['name']) : '' ?></td>
      <td class="font-monospace small"><?= e($s['cron'] !== '' ? $s['cron'] : 'once') ?> <span class="text-body-secondary">(<?= e($s['tz']) ?>, missed: <?= e($s['missed']) ?>)</span></td>
      <td class="small text-nowrap ems-next"><?= e($s['next_due_text'] ?: '—') ?></td>
      <td class="small text-nowrap"><?= e($when($s['last_slot'])) ?></td>
      <td><?= e($s['owner_name']) ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="7" class="text-center text-body-secondary py-4">No schedules: ems schedule add makes one.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
