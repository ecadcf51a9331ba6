<?php
/** The Approvals view (inside operations.php): pending first; who asked, why, what, when it expires; a decision form. */
$mine = static fn (array $r): bool => ($r['requester_person'] ?? '') === 'web:' . $me
    || strtolower((string) ($r['requester_name'] ?? '')) === strtolower($me);
$badge = ['pending' => 'warning', 'approved' => 'success', 'denied' => 'danger', 'expired' => 'secondary'];
?>
<p class="small text-body-secondary">Commands and runs that need a second person. Whoever asked cannot decide their own
  request; every decision needs a reason and is kept in the audit trail with both names.</p>
<div class="table-responsive">
<table class="table table-sm align-middle" id="approvals-table">
  <thead><tr><th>State</th><th>What</th><th>Asked by</th><th>Why</th><th>Asked</th><th>Expires</th><th>Decision</th></tr></thead>
  <tbody>
  <?php foreach ($rows as $r): $pending = ($r['state'] ?? '') === 'pending'; ?>
    <tr data-id="<?= e($r['id']) ?>" class="ems-approval">
      <td><span class="badge text-bg-<?= e($badge[$r['state']] ?? 'secondary') ?>"><?= e($r['state']) ?></span></td>
      <td><?= e($r['summary']) ?><div class="small text-body-secondary font-monospace"><?= e($r['id']) ?></div></td>
      <td><?= e($r['requester_name']) ?></td>
      <td class="ems-reason"><?= e($r['reason']) ?></td>
      <td class="small text-nowrap"><?= e($when($r['created'])) ?></td>
      <td class="small text-nowrap"><?= $pending ? e($when($r['expires'])) : '—' ?></td>
      <td class="ems-decision">
      <?php if (!$pending): ?>
        <span class="small"><?= e($r['decided_name'] ?: '—') ?><?= $r['decided_reason'] ? ': ' . e($r['decided_reason']) : '' ?></span>
      <?php elseif ($mine($r)): ?>
        <span class="badge text-bg-secondary ems-own">your request: waiting for another person</span>
      <?php elseif ($canAct && $apiOn): ?>
        <form method="post" action="/operations/decide" class="d-flex gap-1 ems-decide">
          <input type="hidden" name="csrf" value="<?= e(\Ems\Web\Session::csrfToken()) ?>">
          <input type="hidden" name="id" value="<?= e($r['id']) ?>">
          <input class="form-control form-control-sm" type="text" name="reason" maxlength="<?= e($maxReason) ?>" required
                 placeholder="Reason (audited)" aria-label="Reason for the decision on <?= e($r['summary']) ?>">
          <button type="submit" name="approve" value="1" class="btn btn-sm btn-success ems-approve">Approve</button>
          <button type="submit" name="approve" value="0" class="btn btn-sm btn-outline-danger ems-deny">Deny</button>
        </form>
      <?php else: ?>
        <span class="small text-body-secondary">waiting for an operator</span>
      <?php endif; ?>
      </td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="7" class="text-center text-body-secondary py-4">No approval requests. Admins choose which commands need a
      second person (ems approvals require reboot).</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
