<?php
/**
 * The filter bar every list tab shows above its table (a GET form: nothing changes on the server).
 * @var string $action the tab's path @var string $id the form's id @var string $countId the counter's id
 * @var string $q the text filter @var string $placeholder @var int $size the filter box's width
 * @var array $fields the tab's own fields between the text filter and the page size, in order: each
 *            ['select', name, id, [value => label], selected] or ['input', name, id, placeholder, value, size]
 * @var ?array $columns the column chooser (key => [label, shown]), or null for a tab without one
 * @var int $perPage @var string $sort @var string $dir @var ?string $csv the CSV export's URL, or null
 * @var string $count the counter's text
 * A select applies at once (class ems-autosubmit, app.js).
 */
use Ems\Web\ListParams;
?>
<form method="get" action="<?= e($action) ?>" class="row g-2 align-items-center mb-3 ems-filter" id="<?= e($id) ?>">
  <div class="col-auto"><input class="form-control form-control-sm" type="search" name="q" id="filter-q"
       placeholder="<?= e($placeholder) ?>" value="<?= e($q) ?>" size="<?= e($size) ?>"></div>
  <?php foreach ($fields as $field): ?>
    <?php if ($field[0] === 'select'): ?>
      <div class="col-auto">
        <select class="form-select form-select-sm ems-autosubmit" name="<?= e($field[1]) ?>" id="<?= e($field[2]) ?>">
          <?php foreach ($field[3] as $value => $label): ?>
            <option value="<?= e($value) ?>"<?= (string) $field[4] === (string) $value ? ' selected' : '' ?>><?= e($label) ?></option>
          <?php endforeach; ?>
        </select>
      </div>
    <?php else: ?>
      <div class="col-auto"><input class="form-control form-control-sm" type="search" name="<?= e($field[1]) ?>" id="<?= e($field[2]) ?>"
           placeholder="<?= e($field[3]) ?>" value="<?= e($field[4]) ?>" size="<?= e($field[5]) ?>"></div>
    <?php endif; ?>
  <?php endforeach; ?>
  <?php if ($columns !== null): ?>
    <div class="col-auto dropdown">
      <button class="btn btn-sm btn-outline-secondary dropdown-toggle" type="button" id="columns-menu"
              data-bs-toggle="dropdown" data-bs-auto-close="outside" aria-expanded="false">Columns</button>
      <div class="dropdown-menu p-2" aria-labelledby="columns-menu" id="columns-choice">
        <?php foreach ($columns as $key => [$label, $isShown]): ?>
          <div class="form-check"><input class="form-check-input" type="checkbox" name="cols[]" value="<?= e($key) ?>"
               id="col-<?= e($key) ?>"<?= $isShown ? ' checked' : '' ?>><label class="form-check-label text-nowrap" for="col-<?= e($key) ?>"><?= e($label) ?></label></div>
        <?php endforeach; ?>
      </div>
    </div>
  <?php endif; ?>
  <div class="col-auto">
    <select class="form-select form-select-sm ems-autosubmit" name="per" id="filter-per">
      <?php foreach (ListParams::PAGE_SIZES as $pageSize): ?>
        <option value="<?= e($pageSize) ?>"<?= $perPage === $pageSize ? ' selected' : '' ?>><?= e($pageSize) ?> a page</option>
      <?php endforeach; ?>
    </select>
  </div>
  <input type="hidden" name="sort" value="<?= e($sort) ?>">
  <input type="hidden" name="dir" value="<?= e($dir) ?>">
  <div class="col-auto"><button class="btn btn-sm btn-primary" type="submit" id="filter-apply">Apply</button></div>
  <?php if ($csv !== null): ?>
    <div class="col-auto"><a class="btn btn-sm btn-outline-secondary" id="csv-export" href="<?= e($csv) ?>">CSV</a></div>
  <?php endif; ?>
  <div class="col-auto text-body-secondary small" id="<?= e($countId) ?>"><?= e($count) ?></div>
</form>
