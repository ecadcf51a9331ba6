<?php
/** One broadcast (inside operations.php): counts for everyone; its text, reason and each recipient's delivered /
 *  read times for operators and admins (as live chat). */
use Ems\Web\View;

$b = $broadcast;
?>
<p><a href="/operations<?= e(View::query([], ['view' => 'broadcasts'])) ?>" id="back-to-broadcasts">← All broadcasts</a></p>
<div class="card card-body mb-3" id="broadcast-detail">
  <h2 class="h6">Broadcast <span class="font-monospace small"><?= e($b['id']) ?></span> <span class="badge text-bg-secondary"><?= e($b['state']) ?></span></h2>
  <div class="small">Sent by <?= e($b['person']) ?> to <span class="font-monospace"><?= e($b['selector']) ?></span>, <?= e($when($b['created'])) ?>;
    <?= e((int) $b['count']) ?> recipient(s): <?php foreach ($b['counts'] ?? [] as $status => $n): ?><span class="badge text-bg-light border me-1"><?= e($status) ?> <?= e($n) ?></span><?php endforeach; ?></div>
  <?php if ($canAct): ?>
    <blockquote class="border-start ps-2 mt-2 mb-1" id="broadcast-text-shown"><?= e($b['text'] ?? '') ?></blockquote>
    <div class="small text-body-secondary">Reason: <?= e($b['reason'] ?? '') ?></div>
  <?php endif; ?>
</div>
<?php if ($canAct): ?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="recipients-table">
  <thead><tr><th>Agent</th><th>Status</th><th>Delivered</th><th>Read</th></tr></thead>
  <tbody>
  <?php foreach ($b['recipients'] ?? [] as $r): ?>
    <tr class="ems-recipient" data-id="<?= e($r['client_id']) ?>">
      <td class="font-monospace"><?= e($r['client_id']) ?></td>
      <td><span class="badge text-bg-secondary"><?= e($r['status']) ?></span></td>
      <td class="small text-nowrap"><?= e($when($r['delivered_ts'])) ?></td>
      <td class="small text-nowrap"><?= e($when($r['read_ts'])) ?></td>
    </tr>
  <?php endforeach; ?>
  </tbody>
</table>
</div>
<?php else: ?>
  <p class="small text-body-secondary">Who got and read a message is for operators and admins, as chat is.</p>
<?php endif; ?>
