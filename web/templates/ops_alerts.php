<?php
/** The Alerts view (inside operations.php): open alerts first, then the history; suppressed ones with the reason
 *  nobody was told; Acknowledge with a reason for operators and admins. */
use Ems\Web\Session;

$rank = ['open' => 0, 'suppressed' => 1, 'resolved' => 2];
usort($rows, static fn (array $a, array $b): int => [$rank[$a['state']] ?? 3, -(int) $a['id']] <=> [$rank[$b['state']] ?? 3, -(int) $b['id']]);
$stateBadge = ['open' => 'danger', 'suppressed' => 'secondary', 'resolved' => 'success'];
?>
<p class="small text-body-secondary">Open alerts first, then suppressed and resolved ones. An acknowledgement needs a
  reason and is kept with your name; a security alert resolves by it.</p>
<div class="table-responsive">
<table class="table table-sm align-middle" id="alerts-table">
  <thead><tr><th>State</th><th>Alert</th><th>Severity</th><th>Agent</th><th>Opened</th><th>Acknowledged</th></tr></thead>
  <tbody>
  <?php foreach ($rows as $a): $open = $a['state'] === 'open'; ?>
    <tr data-id="<?= e($a['id']) ?>" class="ems-alert ems-alert-<?= e($a['state']) ?>">
      <td><span class="badge text-bg-<?= e($stateBadge[$a['state']] ?? 'secondary') ?>"><?= e($a['state']) ?></span></td>
      <td><?= e($a['title']) ?><div class="small text-body-secondary"><?= e($a['text']) ?></div>
        <?php if (($a['suppressed'] ?? '') !== ''): ?><div class="small text-warning-emphasis ems-suppressed"><?= e($a['suppressed']) ?></div><?php endif; ?></td>
      <td><span class="badge text-bg-<?= e($severityBadge[$a['severity']] ?? 'secondary') ?>"><?= e($a['severity']) ?></span></td>
      <td class="font-monospace small"><?= e($a['target']) ?></td>
      <td class="small text-nowrap"><?= e($when($a['opened_at'])) ?><?= $a['resolved_at'] ? '<div>resolved ' . e($when($a['resolved_at'])) . '</div>' : '' ?></td>
      <td class="ems-ack">
      <?php if (($a['acked_name'] ?? '') !== ''): ?>
        <span class="small"><?= e($a['acked_name']) ?>: <?= e($a['ack_reason']) ?></span>
      <?php elseif ($open && $canAct): ?>
        <form method="post" action="/operations/ack" class="d-flex gap-1 ems-ack-form">
          <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
          <input type="hidden" name="id" value="<?= e($a['id']) ?>">
          <input class="form-control form-control-sm" type="text" name="reason" maxlength="<?= e($maxReason) ?>" required
                 placeholder="Reason (audited)" aria-label="Reason for acknowledging <?= e($a['title']) ?>">
          <button type="submit" class="btn btn-sm btn-outline-primary ems-ack-button">Acknowledge</button>
        </form>
      <?php else: ?>
        <span class="small text-body-secondary">—</span>
      <?php endif; ?>
      </td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="6" class="text-center text-body-secondary py-4">No alerts. Admins set the rules (ems alerts rules).</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
