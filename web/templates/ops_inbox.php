<?php
/** The Inbox view (inside operations.php): this web user's own notices, newest first; mark one or all read. An
 *  approval request links to the Approvals view. */
use Ems\Web\Session;

$unreadCount = (int) ($unread ?? 0);
$readForm = static function (array $fields, string $label, string $id = ''): string {
    $hidden = '';
    foreach ($fields as $name => $value) {
        $hidden .= '<input type="hidden" name="' . e($name) . '" value="' . e($value) . '">';
    }
    return '<form method="post" action="/operations/inbox-read" class="d-inline"' . ($id !== '' ? ' id="' . e($id) . '"' : '') . '>'
        . '<input type="hidden" name="csrf" value="' . e(Session::csrfToken()) . '">' . $hidden
        . '<button type="submit" class="btn btn-sm btn-outline-secondary ems-mark-read">' . e($label) . '</button></form>';
};
?>
<div class="d-flex align-items-center gap-2 mb-2">
  <p class="small text-body-secondary mb-0 me-auto">Your own notices: alerts for everyone; approval requests for
    operators and admins (never your own). Marking read is yours alone. <span id="inbox-unread"><?= e($unreadCount) ?> unread</span>.</p>
  <?php if ($unreadCount > 0): ?><?= $readForm(['all' => '1'], 'Mark all read', 'inbox-read-all') ?><?php endif; ?>
</div>
<div class="table-responsive">
<table class="table table-sm align-middle" id="inbox-table">
  <thead><tr><th></th><th>What</th><th>Severity</th><th>Agent</th><th>When</th><th></th></tr></thead>
  <tbody>
  <?php foreach ($rows as $n): $isNew = empty($n['read']); ?>
    <tr data-id="<?= e($n['id']) ?>" class="ems-notice<?= $isNew ? ' fw-semibold' : '' ?>">
      <td><?= $isNew ? '<span class="badge text-bg-primary ems-new">new</span>' : '<span class="text-body-secondary small">read</span>' ?></td>
      <td><?= e($n['title']) ?> <span class="badge text-bg-secondary"><?= e($n['state']) ?></span>
        <div class="small text-body-secondary fw-normal"><?= e($n['text']) ?></div>
        <?php if (($n['kind'] ?? '') === 'approval'): ?>
          <a class="small ems-to-approvals" href="/operations?view=approvals">Decide it on Approvals →</a>
        <?php endif; ?></td>
      <td><span class="badge text-bg-<?= e($severityBadge[$n['severity']] ?? 'secondary') ?>"><?= e($n['severity']) ?></span></td>
      <td class="font-monospace small"><?= e($n['target']) ?></td>
      <td class="small text-nowrap"><?= e($when($n['ts'])) ?></td>
      <td class="text-end"><?= $isNew ? $readForm(['id' => (string) $n['id']], 'Mark read') : '' ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="6" class="text-center text-body-secondary py-4">Your inbox is empty: alerts and approval requests
      land here (admins set the alert rules: ems alerts rules).</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
