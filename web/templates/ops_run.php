<?php
/** One bulk run (inside operations.php): state, why, progress, its targets paged, Cancel with a reason. */
use Ems\Web\Session;
use Ems\Web\View;

$run = $runDetail;
?>
<p><a href="/operations?view=bulk" id="runs-back">← all bulk runs</a></p>
<?php if ($run !== null):
    $pages = max(1, (int) ceil(((int) $run['count']) / $perPage)); ?>
<div class="card card-body mb-3" id="run-detail" data-id="<?= e($run['id']) ?>">
  <h2 class="h6"><?= e($run['name']) ?> on <span class="font-monospace"><?= e($run['selector']) ?></span>
    <span class="badge text-bg-<?= e($runBadge[$run['state']] ?? 'secondary') ?>" id="run-state"><?= e($run['state']) ?></span></h2>
  <div class="small mb-2">Started by <?= e($who($run)) ?> · <?= e($when($run['created'])) ?>
    <?php if ($run['why'] !== ''): ?> · <span id="run-why"><?= e($run['why']) ?></span><?php endif; ?></div>
  <div class="mb-2"><?= $progress($run) ?></div>
  <div class="small text-body-secondary" id="run-counts"><?php foreach ($run['counts'] as $status => $n): ?>
    <span class="me-3"><?= e($status) ?>: <?= e($n) ?></span><?php endforeach; ?></div>
  <?php if ($canAct && !in_array($run['state'], $ended, true)): ?>
  <form method="post" action="/operations/cancel" class="row g-2 align-items-end mt-2" id="cancel-form">
    <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
    <input type="hidden" name="id" value="<?= e($run['id']) ?>">
    <div class="col"><label class="form-label mb-0 small" for="cancel-reason">Reason to cancel (only who started it may; kept in the audit trail)</label>
      <input class="form-control form-control-sm" type="text" name="reason" id="cancel-reason" maxlength="<?= e($maxReason) ?>" required></div>
    <div class="col-auto"><button type="submit" class="btn btn-sm btn-outline-danger" id="cancel-run">Cancel run</button></div>
  </form>
  <?php endif; ?>
</div>
<h3 class="h6">Targets <span class="small text-body-secondary">· page <?= e($page) ?> of <?= e($pages) ?></span></h3>
<table class="table table-sm" id="run-targets">
  <thead><tr><th>Client</th><th>Status</th><th>Command id</th></tr></thead>
  <tbody>
  <?php foreach ($run['targets'] as $t): ?>
    <tr><td class="font-monospace"><?= e($t['client_id']) ?></td><td><?= e($t['status']) ?></td>
      <td class="font-monospace small"><?= e($t['command_id']) ?></td></tr>
  <?php endforeach; ?>
  </tbody>
</table>
<nav aria-label="pages"><ul class="pagination pagination-sm">
  <li class="page-item<?= $page <= 1 ? ' disabled' : '' ?>"><a class="page-link" href="<?= e(View::query(['view' => 'bulk', 'run' => $run['id']], ['page' => max(1, $page - 1)])) ?>">Previous</a></li>
  <li class="page-item<?= $page >= $pages ? ' disabled' : '' ?>"><a class="page-link" id="targets-next" href="<?= e(View::query(['view' => 'bulk', 'run' => $run['id']], ['page' => min($pages, $page + 1)])) ?>">Next</a></li>
</ul></nav>
<?php endif; ?>
