<?php
/** The Templates view (inside operations.php): the list; a chosen one's run form (typed parameters, selector,
 *  pacing), "Preview targets" (a dry run: nothing is sent), then Run with a reason. */
use Ems\Web\Session;
use Ems\Web\TemplateForm;
use Ems\Web\View;

$chosen = null;
foreach ($rows as $t) {
    $chosen = ($t['name'] ?? '') === ($chosenName ?? '') ? $t : $chosen;
}
$form = ($form ?? []) + TemplateForm::DEFAULTS;
?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="templates-table">
  <thead><tr><th>Template</th><th>Command</th><th>Parameters</th><th>Approval</th><th></th></tr></thead>
  <tbody>
  <?php foreach ($rows as $t): ?>
    <tr data-name="<?= e($t['name']) ?>"<?= $chosen !== null && $t['name'] === $chosen['name'] ? ' class="table-active"' : '' ?>>
      <td><?= e($t['name']) ?><div class="small text-body-secondary"><?= e($t['description'] ?? '') ?></div></td>
      <td class="font-monospace small"><?= e($t['command']) ?></td>
      <td class="small"><?= e(implode(', ', array_map(static fn ($n, $s) => $n . ' (' . ($s['type'] ?? '?') . ')', array_keys($t['params'] ?? []), $t['params'] ?? []))) ?: '—' ?></td>
      <td><?= !empty($t['approval']) ? '<span class="badge text-bg-warning">second person</span>' : '—' ?></td>
      <td class="text-end"><?php if ($canAct): ?><a class="btn btn-sm btn-outline-primary ems-choose" href="/operations<?= e(View::query([], ['view' => 'templates', 'template' => $t['name']])) ?>">Run…</a><?php endif; ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="5" class="text-center text-body-secondary py-4">No templates: admins define them (ems template add).</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
<?php if ($chosen !== null && $canAct): ?>
<form method="post" action="/operations/run" class="card card-body mb-3" id="run-form">
  <h2 class="h6">Run <?= e($chosen['name']) ?> <span class="small text-body-secondary">(<?= e($chosen['command']) ?>)</span></h2>
  <?php if (!empty($chosen['approval'])): ?><div class="small text-warning-emphasis mb-2">Every run of this template waits for another person's approval.</div><?php endif; ?>
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <input type="hidden" name="template" value="<?= e($chosen['name']) ?>">
  <?php if (isset($preview)): ?><input type="hidden" name="previewed" value="<?= e($form['selector']) ?>"><?php endif; ?>
  <div class="row g-2">
  <?php foreach ($chosen['params'] ?? [] as $pname => $spec): [$type, $options, $attrs] = TemplateForm::input($spec);
      $id = 'param-' . $pname; $value = $form['p_' . $pname] ?? ''; ?>
    <div class="col-md-4">
      <label class="form-label mb-0 small" for="<?= e($id) ?>"><?= e($pname) ?> <span class="text-body-secondary">(<?= e($spec['type']) ?><?= !empty($spec['required']) ? ', required' : '' ?><?= isset($spec['default']) ? ', default ' . e(var_export($spec['default'], true)) : '' ?>)</span></label>
      <?php if ($type === 'select'): ?>
        <select class="form-select form-select-sm ems-param" id="<?= e($id) ?>" name="p[<?= e($pname) ?>]"<?= !empty($spec['required']) ? ' required' : '' ?>>
          <option value="">(default)</option>
          <?php foreach ($options as $ov => $ol): ?><option value="<?= e($ov) ?>"<?= (string) $ov === $value ? ' selected' : '' ?>><?= e($ol) ?></option><?php endforeach; ?>
        </select>
      <?php else: ?>
        <input class="form-control form-control-sm ems-param" type="<?= e($type) ?>" id="<?= e($id) ?>" name="p[<?= e($pname) ?>]" value="<?= e($value) ?>"
          <?php foreach ($attrs as $an => $av): if ($av !== null): ?> <?= e($an) ?>="<?= e($av) ?>"<?php endif; endforeach; ?><?= !empty($spec['required']) ? ' required' : '' ?>>
      <?php endif; ?>
      <?php if (!empty($spec['help'])): ?><div class="form-text"><?= e($spec['help']) ?></div><?php endif; ?>
    </div>
  <?php endforeach; ?>
  </div>
  <div class="row g-2 mt-1">
    <div class="col-md-6"><label class="form-label mb-0 small" for="run-selector">Which agents (selector: all, group:lab, tag:kiosk, id:desk-*, a,b)</label>
      <input class="form-control form-control-sm font-monospace" type="text" id="run-selector" name="selector" maxlength="1000" required value="<?= e($form['selector']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="run-parallel">At most at once</label>
      <input class="form-control form-control-sm" type="number" id="run-parallel" name="max_parallel" min="1" max="1000" step="1" value="<?= e($form['max_parallel']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="run-canary">Canary agents first</label>
      <input class="form-control form-control-sm" type="number" id="run-canary" name="canary" min="0" max="1000" step="1" value="<?= e($form['canary']) ?>"></div>
    <div class="col-md-2"><label class="form-label mb-0 small" for="run-halt">Halt at % failed</label>
      <input class="form-control form-control-sm" type="number" id="run-halt" name="halt_failure_pct" min="0" max="100" step="1" value="<?= e($form['halt_failure_pct']) ?>" placeholder="never"></div>
  </div>
  <div class="row g-2 mt-1 align-items-end">
    <div class="col"><label class="form-label mb-0 small" for="run-reason">Reason (required to run; kept in the audit trail with your name)</label>
      <input class="form-control form-control-sm" type="text" id="run-reason" name="reason" maxlength="<?= e($maxReason) ?>" required></div>
    <div class="col-auto"><button type="submit" name="preview" value="1" class="btn btn-sm btn-outline-secondary" id="run-preview" formnovalidate>Preview targets</button></div>
    <?php if (isset($preview)): ?>
      <div class="col-auto"><button type="submit" name="preview" value="0" class="btn btn-sm btn-primary" id="run-start">Run on <?= e((int) $preview['count']) ?> agent(s)</button></div>
    <?php endif; ?>
  </div>
  <?php if (!isset($preview)): ?><div class="form-text">Preview the targets first: Run appears once you have seen them.</div><?php endif; ?>
</form>
<?php if (isset($preview)): ?>
<div class="card card-body mb-3" id="run-preview-list">
  <h3 class="h6">Preview: <?= e((int) $preview['count']) ?> agent(s) match <span class="font-monospace"><?= e($preview['selector']) ?></span> — nothing was sent</h3>
  <table class="table table-sm mb-0"><thead><tr><th>Client</th><th>Now</th></tr></thead><tbody>
  <?php foreach (array_slice($preview['targets'] ?? [], 0, 200) as $t): ?>
    <tr><td class="font-monospace"><?= e($t['client_id']) ?></td><td><?= !empty($t['online']) ? '<span class="badge text-bg-success">online</span>' : '<span class="badge text-bg-secondary">offline (gets it when back, until it expires)</span>' ?></td></tr>
  <?php endforeach; ?>
  <?php if ((int) $preview['count'] > 200): ?><tr><td colspan="2" class="text-body-secondary">… and <?= e((int) $preview['count'] - 200) ?> more</td></tr><?php endif; ?>
  </tbody></table>
</div>
<?php endif; ?>
<?php endif; ?>
