<?php
/** The Broadcasts view (inside operations.php): a send form (operators and admins) whose Send appears after a
 *  preview of the recipients, and the newest broadcasts with their counts. */
use Ems\Web\OpsFeeds;
use Ems\Web\Session;
use Ems\Web\View;

$form = ($form ?? []) + ['selector' => '', 'text' => ''];
$short = static fn (string $t): string => (iconv_strlen($t) ?: 0) > 60 ? iconv_substr($t, 0, 59) . '…' : $t;
$count = static fn (array $b, string $status): int => (int) ($b['counts'][$status] ?? 0);
?>
<?php if ($canAct): ?>
<form method="post" action="/operations/broadcast" class="card card-body mb-3" id="broadcast-form">
  <h2 class="h6">Send a message to many agents</h2>
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <?php if (isset($preview)): ?><input type="hidden" name="previewed" value="<?= e($form['selector']) ?>"><?php endif; ?>
  <div class="row g-2">
    <div class="col-md-4"><label class="form-label mb-0 small" for="broadcast-selector">Which agents (selector: all, group:lab, tag:kiosk)</label>
      <input class="form-control form-control-sm font-monospace" type="text" id="broadcast-selector" name="selector" maxlength="1000" required value="<?= e($form['selector']) ?>"></div>
    <div class="col-md-8"><label class="form-label mb-0 small" for="broadcast-text">Message (the users see it in a chat window)</label>
      <textarea class="form-control form-control-sm" id="broadcast-text" name="text" rows="2" maxlength="<?= e(OpsFeeds::MAX_TEXT) ?>" required><?= e($form['text']) ?></textarea></div>
  </div>
  <div class="row g-2 mt-1 align-items-end">
    <div class="col"><label class="form-label mb-0 small" for="broadcast-reason">Reason (required to send; kept in the audit trail with your name)</label>
      <input class="form-control form-control-sm" type="text" id="broadcast-reason" name="reason" maxlength="<?= e($maxReason) ?>"></div>
    <div class="col-auto"><button type="submit" name="preview" value="1" class="btn btn-sm btn-outline-secondary" id="broadcast-preview">Preview recipients</button></div>
    <?php if (isset($preview)): ?>
      <div class="col-auto"><button type="submit" name="preview" value="0" class="btn btn-sm btn-primary" id="broadcast-send">Send to <?= e((int) $preview['count']) ?> agent(s)</button></div>
    <?php endif; ?>
  </div>
  <?php if (!isset($preview)): ?><div class="form-text">Preview the recipients first: Send appears once you have seen them.</div><?php endif; ?>
</form>
<?php if (isset($preview)): ?>
<div class="card card-body mb-3" id="broadcast-preview-list">
  <h3 class="h6">Preview: <?= e((int) $preview['count']) ?> agent(s) match <span class="font-monospace"><?= e($preview['selector']) ?></span> — nothing was sent</h3>
  <table class="table table-sm mb-0"><thead><tr><th>Client</th><th>Now</th></tr></thead><tbody>
  <?php foreach (array_slice($preview['targets'] ?? [], 0, 200) as $t): ?>
    <tr><td class="font-monospace"><?= e($t['client_id']) ?></td><td><?= !empty($t['online']) ? '<span class="badge text-bg-success">online</span>' : '<span class="badge text-bg-secondary">offline (gets it when back)</span>' ?></td></tr>
  <?php endforeach; ?>
  </tbody></table>
</div>
<?php endif; ?>
<?php endif; ?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="broadcasts-table">
  <thead><tr><th>Broadcast</th><th>State</th><th>Recipients</th><th>Delivered</th><th>Read</th><th>Selector</th><th>Sent by</th><th>Sent</th></tr></thead>
  <tbody>
  <?php foreach ($rows as $b): ?>
    <tr data-id="<?= e($b['id']) ?>" class="ems-broadcast">
      <td><a href="/operations<?= e(View::query([], ['view' => 'broadcasts', 'broadcast' => $b['id']])) ?>"><?= e($canAct ? $short((string) ($b['text'] ?? '')) : $b['id']) ?></a></td>
      <td><span class="badge text-bg-secondary"><?= e($b['state']) ?></span></td>
      <td><?= e((int) $b['count']) ?></td>
      <td><?= e($count($b, 'delivered') + $count($b, 'read')) ?></td>
      <td><?= e($count($b, 'read')) ?></td>
      <td class="font-monospace small"><?= e($b['selector']) ?></td>
      <td><?= e($b['person']) ?></td>
      <td class="small text-nowrap"><?= e($when($b['created'])) ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="8" class="text-center text-body-secondary py-4">No broadcasts yet<?= $canAct ? ': send one above' : '' ?>.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
