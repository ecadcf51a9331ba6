<?php
/** The add-a-schedule form (inside ops_schedules.php): choose a template, then its parameters (as on Templates), which
 *  agents, cron or one time, zone, missed policy and a reason. */
use Ems\Web\OpsFeeds;
use Ems\Web\Session;
use Ems\Web\TemplateForm;

$chosen = null;
foreach ($templates as $t) {
    $chosen = ($t['name'] ?? '') === ($chosenName ?? '') ? $t : $chosen;
}
$form = ($form ?? []) + TemplateForm::DEFAULTS;
$slot = ($slot ?? []) + ['name' => '', 'cron' => '', 'at' => '', 'tz' => 'UTC', 'missed' => 'skip'];
?>
<form method="get" action="/operations" class="d-flex gap-2 align-items-end mb-2" id="schedule-choose">
  <input type="hidden" name="view" value="schedules">
  <div><label class="form-label mb-0 small" for="schedule-template">New schedule of the template</label>
    <select class="form-select form-select-sm" id="schedule-template" name="template">
      <?php foreach ($templates as $t): ?><option value="<?= e($t['name']) ?>"<?= $chosen !== null && $t['name'] === $chosen['name'] ? ' selected' : '' ?>><?= e($t['name']) ?></option><?php endforeach; ?>
    </select></div>
  <button type="submit" class="btn btn-sm btn-outline-primary" id="schedule-choose-button"<?= $templates ? '' : ' disabled' ?>>Choose…</button>
</form>
<?php if ($chosen !== null): ?>
<form method="post" action="/operations/schedule" class="card card-body mb-3" id="schedule-form">
  <h2 class="h6">Schedule <?= e($chosen['name']) ?> <span class="small text-body-secondary">(<?= e($chosen['command']) ?>)</span></h2>
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <input type="hidden" name="template" value="<?= e($chosen['name']) ?>">
  <div class="row g-2">
  <?php foreach ($chosen['params'] ?? [] as $pname => $spec): [$type, $options, $attrs] = TemplateForm::input($spec);
      $id = 'sparam-' . $pname; $value = $form['p_' . $pname] ?? ''; ?>
    <div class="col-md-3">
      <label class="form-label mb-0 small" for="<?= e($id) ?>"><?= e($pname) ?> <span class="text-body-secondary">(<?= e($spec['type']) ?><?= !empty($spec['required']) ? ', required' : '' ?>)</span></label>
      <?php if ($type === 'select'): ?>
        <select class="form-select form-select-sm" id="<?= e($id) ?>" name="p[<?= e($pname) ?>]">
          <option value="">(default)</option>
          <?php foreach ($options as $ov => $ol): ?><option value="<?= e($ov) ?>"<?= (string) $ov === $value ? ' selected' : '' ?>><?= e($ol) ?></option><?php endforeach; ?>
        </select>
      <?php else: ?>
        <input class="form-control form-control-sm" type="<?= e($type) ?>" id="<?= e($id) ?>" name="p[<?= e($pname) ?>]" value="<?= e($value) ?>"
          <?php foreach ($attrs as $an => $av): if ($av !== null): ?> <?= e($an) ?>="<?= e($av) ?>"<?php endif; endforeach; ?>>
      <?php endif; ?>
    </div>
  <?php endforeach; ?>
    <div class="col-md-3"><label class="form-label mb-0 small" for="schedule-selector">Which agents (selector)</label>
      <input class="form-control form-control-sm font-monospace" type="text" id="schedule-selector" name="selector" maxlength="1000" required value="<?= e($form['selector']) ?>"></div>
  </div>
  <div class="row g-2 mt-1">
    <div class="col-md-2"><label class="form-label mb-0 small" for="schedule-name">Name</label>
      <input class="form-control form-control-sm" type="text" id="schedule-name" name="name" maxlength="64" required value="<?= e($slot['name']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="schedule-cron">Repeat (cron, e.g. 0 2 * * 1-5)</label>
      <input class="form-control form-control-sm font-monospace" type="text" id="schedule-cron" name="cron" maxlength="100" value="<?= e($slot['cron']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="schedule-at">or once at (YYYY-MM-DD HH:MM)</label>
      <input class="form-control form-control-sm font-monospace" type="text" id="schedule-at" name="at" maxlength="16" value="<?= e($slot['at']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="schedule-tz">Zone (IANA)</label>
      <input class="form-control form-control-sm" type="text" id="schedule-tz" name="tz" maxlength="64" value="<?= e($slot['tz']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="schedule-missed">If the broker was down</label>
      <select class="form-select form-select-sm" id="schedule-missed" name="missed">
        <?php foreach (OpsFeeds::MISSED as $mv => $ml): ?><option value="<?= e($mv) ?>"<?= $slot['missed'] === $mv ? ' selected' : '' ?>><?= e($ml) ?></option><?php endforeach; ?>
      </select></div>
  </div>
  <div class="row g-2 mt-1 align-items-end">
    <div class="col"><label class="form-label mb-0 small" for="schedule-reason">Reason (each run's reason in the audit trail, with your name)</label>
      <input class="form-control form-control-sm" type="text" id="schedule-reason" name="reason" maxlength="<?= e($maxReason) ?>" required></div>
    <div class="col-auto"><button type="submit" class="btn btn-sm btn-primary" id="schedule-add">Add schedule</button></div>
  </div>
  <div class="form-text">The run is tried as a dry run first: a bad parameter or selector is refused now, not at 2 a.m.</div>
</form>
<?php endif; ?>
