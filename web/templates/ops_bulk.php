<?php
/** The Bulk runs view (inside operations.php): the newest runs with their state and progress. */
use Ems\Web\View;

?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="runs-table">
  <thead><tr><th>Command</th><th>State</th><th>Progress</th><th>Selector</th><th>Started by</th><th>Started</th></tr></thead>
  <tbody>
  <?php foreach ($rows as $run): ?>
    <tr data-id="<?= e($run['id']) ?>" class="ems-run">
      <td><a href="/operations<?= e(View::query([], ['view' => 'bulk', 'run' => $run['id']])) ?>"><?= e($run['name']) ?></a>
        <div class="small text-body-secondary font-monospace"><?= e($run['id']) ?></div></td>
      <td><span class="badge text-bg-<?= e($runBadge[$run['state']] ?? 'secondary') ?> ems-run-state"><?= e($run['state']) ?></span></td>
      <td class="text-nowrap"><?= $progress($run) ?></td>
      <td class="font-monospace small"><?= e($run['selector']) ?></td>
      <td><?= e($who($run)) ?></td>
      <td class="small text-nowrap"><?= e($when($run['created'])) ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="6" class="text-center text-body-secondary py-4">No bulk runs yet: run a template (Templates) or use
      ems bulk start.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
