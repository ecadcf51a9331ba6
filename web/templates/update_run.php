<?php
/** @var array $batch @var array $view @var bool $canAct @var int $max */
use Ems\Web\Session;
use Ems\Web\UpdatesPage;

$isCheck = $batch['action'] === 'update-check';
?>
<div id="update-run" data-id="<?= e((int) $batch['id']) ?>" data-step="<?= $canAct ? '1' : '0' ?>" data-state="<?= e($view['state']) ?>"
     data-initial="<?= e(json_encode($view, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES)) ?>">
<h1 class="h5"><?= e(UpdatesPage::ACTIONS[$batch['action']] ?? 'Updates') ?> #<?= e((int) $batch['id']) ?>
  <span class="badge text-bg-secondary" id="run-state"><?= e($view['state']) ?></span></h1>
<p class="small mb-1">By <?= e($batch['operator']) ?> · <?= e(gmdate('Y-m-d H:i', (int) $batch['created'])) ?> UTC · reason: <?= e($batch['reason']) ?>
  <?php if (!$isCheck): ?> · first wave <?= e((int) $batch['first_wave']) ?>, then waves of <?= e((int) $batch['wave_size']) ?>,
    stop after a wave with <?= e((int) $batch['stop_failures']) ?> failure<?= (int) $batch['stop_failures'] === 1 ? '' : 's' ?>
    <?php if ($batch['source_batch']): ?> · from <a href="/updates/run?id=<?= e((int) $batch['source_batch']) ?>">check #<?= e((int) $batch['source_batch']) ?></a><?php endif; ?>
  <?php endif; ?></p>
<div class="alert alert-info small py-2" id="run-advance">
  <?php if ($canAct): ?>
    This <?= $isCheck ? 'check' : 'rollout' ?> moves on only while a page like this one is open: every second it asks the web
    server for the next step (<?= e($isCheck ? 'send the commands, read their status' : 'send the wave\'s commands, read their status, start the next wave') ?>).
    Close every such page and it pauses where it is; commands already sent still run on their clients. Open it again to go on.
    Every command names <?= e($batch['operator']) ?>, who started it, and carries the reason above.
  <?php else: ?>
    You may watch but not act: the <?= $isCheck ? 'check' : 'rollout' ?> moves on only while an operator keeps its page open.
  <?php endif; ?>
</div>
<div class="progress mb-1" role="progressbar" aria-label="progress" aria-valuemin="0" aria-valuemax="<?= e($view['total']) ?>" id="run-progress"
     aria-valuenow="<?= e($view['final']) ?>"><div class="progress-bar"></div></div>
<p class="small" id="run-summary"></p>
<p class="small text-danger" id="run-note"><?= e($view['note']) ?></p>
<div class="table-responsive">
<table class="table table-sm align-middle" id="run-targets">
  <thead><tr><th>#</th><?= $isCheck ? '' : '<th>Wave</th>' ?><th>Host</th><th>Client id</th><th>Status</th><th>Updates pending</th><th>Names</th><th>Result</th></tr></thead>
  <tbody></tbody>
</table>
</div>
<?php if ($view['total'] > count($view['targets'])): ?>
  <p class="small text-body-secondary">The first <?= e(count($view['targets'])) ?> of <?= e($view['total']) ?> clients are listed; the counts cover all.</p>
<?php endif; ?>
<?php if ($isCheck && $canAct): ?>
<form method="post" action="/updates/apply" class="card card-body mt-3<?= $view['state'] === 'running' ? ' d-none' : '' ?>" id="apply-form">
  <h2 class="h6">Apply in waves</h2>
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <input type="hidden" name="batch" value="<?= e((int) $batch['id']) ?>">
  <div class="row g-2 mb-2">
    <div class="col-auto"><label class="form-label small" for="apply-first">First wave (clients)</label>
      <input class="form-control form-control-sm" type="number" name="first" id="apply-first" value="1" min="1" max="<?= e($max) ?>" required></div>
    <div class="col-auto"><label class="form-label small" for="apply-size">Then waves of</label>
      <input class="form-control form-control-sm" type="number" name="size" id="apply-size" value="5" min="1" max="<?= e($max) ?>" required></div>
    <div class="col-auto"><label class="form-label small" for="apply-stop">Stop after a wave with this many failures</label>
      <input class="form-control form-control-sm" type="number" name="stop" id="apply-stop" value="1" min="1" max="<?= e($max) ?>" required></div>
  </div>
  <div class="form-check mb-2"><input class="form-check-input" type="checkbox" name="skip_failed" value="1" id="apply-skip" checked>
    <label class="form-check-label" for="apply-skip">Leave out the clients whose check failed</label></div>
  <p class="small text-body-secondary mb-2">A wave ends when each of its clients has answered. An offline client's command
    waits for it until the admin API's command time to live (an hour unless configured) and then counts as a failure (expired).</p>
  <label class="form-label" for="apply-reason">Reason (required: each client's user is shown it, the audit trail keeps it with your name)</label>
  <textarea class="form-control mb-2" name="reason" id="apply-reason" maxlength="500" rows="2" required></textarea>
  <div><button type="submit" class="btn btn-danger" id="apply-start">Apply updates in waves</button></div>
</form>
<?php endif; ?>
</div>
