<?php
/** @var string $tab @var string $title @var array $filters @var string $error @var int $minutes */
use Ems\Web\Session;
?>
<div class="row justify-content-center">
  <div class="col-lg-7">
    <form method="post" action="/history/grant" class="card card-body" id="history-reason-form">
      <h1 class="h5"><?= e($title) ?>: why do you open it?</h1>
      <p class="text-body-secondary small mb-2">This history is private to the people it belongs to. Opening it is
        recorded with your name, the filters and your reason, in the web view's audit and in the EMS audit trail,
        and lets you read and export this tab for <?= e($minutes) ?> minutes.</p>
      <?php if ($filters): ?>
        <p class="small mb-2" id="history-reason-filters">Filters:
          <?php foreach ($filters as $name => $value): ?><span class="badge text-bg-secondary me-1"><?= e($name) ?>: <?= e($value) ?></span><?php endforeach; ?>
        </p>
      <?php endif; ?>
      <?php if ($error !== ''): ?><div class="alert alert-danger py-2" id="history-reason-error"><?= e($error) ?></div><?php endif; ?>
      <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
      <input type="hidden" name="tab" value="<?= e($tab) ?>">
      <?php foreach ($filters as $name => $value): ?>
        <input type="hidden" name="<?= e($name) ?>" value="<?= e($value) ?>">
      <?php endforeach; ?>
      <label class="form-label" for="history-reason">Reason</label>
      <input class="form-control mb-3" id="history-reason" name="reason" required maxlength="500"
             placeholder="e.g. ticket 4711: the user asked about a lost message">
      <div><button class="btn btn-primary" type="submit" id="history-reason-submit">Open <?= e($title) ?></button></div>
    </form>
  </div>
</div>
