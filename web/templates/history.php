<?php
/** @var Ems\Web\HistoryQuery $query @var array $rows @var int $total @var int $pages @var array $servers @var string $tab */
use Ems\Web\HistoryQuery;
use Ems\Web\View;

$params = $query->params();
$csv = $params;
unset($csv['page'], $csv['per']);
$cell = static function (array $column, mixed $value): string {
    if ($value === null) {
        return '<span class="text-body-secondary">–</span>';
    }
    return match ($column[2]) {
        'time' => '<span class="ems-time" data-ts="' . e($value) . '">' . e(gmdate('Y-m-d H:i:s', (int) $value)) . ' UTC</span>',
        'bool' => $value ? '<span class="badge text-bg-success">yes</span>' : '<span class="badge text-bg-danger">no</span>',
        'num' => '<span class="ems-num">' . e($value) . '</span>',
        default => '<span class="ems-text">' . e($value) . '</span>',
    };
};
?>
<?php if (!empty($grant)): ?>
  <div class="alert alert-info py-2 small" id="history-grant">Opened for your reason “<?= e($grant['reason']) ?>” until
    <?= e(gmdate('H:i', (int) $grant['expires'])) ?> UTC; the opening is in the audit trail with your name.</div>
<?php endif; ?>
<form method="get" action="/<?= e($tab) ?>" class="row g-2 align-items-center mb-3 ems-filter" id="history-filter">
  <div class="col-auto"><input class="form-control form-control-sm" type="search" name="q" id="filter-q"
       placeholder="Filter" value="<?= e($query->q) ?>" size="30"></div>
  <div class="col-auto">
    <select class="form-select form-select-sm ems-autosubmit" name="server" id="filter-server">
      <option value="">Every server</option>
      <?php foreach ($servers as $server): ?>
        <option value="<?= e($server['server_id']) ?>"<?= $query->server === $server['server_id'] ? ' selected' : '' ?>><?= e($server['name']) ?></option>
      <?php endforeach; ?>
    </select>
  </div>
  <div class="col-auto"><input class="form-control form-control-sm" type="search" name="client" id="filter-client"
       placeholder="Client id" value="<?= e($query->client) ?>" size="16"></div>
  <div class="col-auto">
    <select class="form-select form-select-sm ems-autosubmit" name="per" id="filter-per">
      <?php foreach (HistoryQuery::PAGE_SIZES as $size): ?>
        <option value="<?= e($size) ?>"<?= $query->perPage === $size ? ' selected' : '' ?>><?= e($size) ?> a page</option>
      <?php endforeach; ?>
    </select>
  </div>
  <input type="hidden" name="sort" value="<?= e($query->sort) ?>">
  <input type="hidden" name="dir" value="<?= e($query->dir) ?>">
  <div class="col-auto"><button class="btn btn-sm btn-primary" type="submit" id="filter-apply">Apply</button></div>
  <div class="col-auto"><a class="btn btn-sm btn-outline-secondary" id="csv-export"
       href="/<?= e($tab) ?>.csv<?= e(View::query($csv, [])) ?>">CSV</a></div>
  <div class="col-auto text-body-secondary small" id="history-count"><?= $query->capped ? 'more than ' . e(number_format(HistoryQuery::COUNT_CAP)) : e(number_format($total)) ?> rows · page <?= e($query->page) ?> of <?= e($pages) ?></div>
</form>
<div class="table-responsive">
<table class="table table-sm table-hover align-middle ems-history" id="history-table" data-tab="<?= e($tab) ?>">
  <thead><tr>
    <?php foreach ($query->columns as $key => $column):
        $sealed = str_starts_with($column[2], 'sealed:');
        $active = $query->sort === $key;
        $dir = $active && $query->dir === 'desc' ? 'asc' : 'desc'; ?>
      <th scope="col" data-column="<?= e($key) ?>"><?php if ($sealed): ?><?= e($column[0]) ?><?php else: ?><a class="ems-sort<?= $active ? ' active' : '' ?>" data-sort="<?= e($key) ?>"
         href="<?= e(View::query($params, ['sort' => $key, 'dir' => $dir, 'page' => 1])) ?>"><?= e($column[0]) ?><?= $active ? ($query->dir === 'asc' ? ' ▲' : ' ▼') : '' ?></a><?php endif; ?></th>
    <?php endforeach; ?>
  </tr></thead>
  <tbody>
  <?php foreach ($rows as $row): ?>
    <tr>
      <?php foreach ($query->columns as $key => $column): ?>
        <td class="ems-col-<?= e($key) ?>"><?= $cell($column, $row[$key]) ?></td>
      <?php endforeach; ?>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="<?= e(count($query->columns)) ?>" class="text-center text-body-secondary py-4">Nothing matches.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
<nav aria-label="pages"><ul class="pagination pagination-sm" id="history-pages">
  <li class="page-item<?= $query->page <= 1 ? ' disabled' : '' ?>"><a class="page-link" id="page-prev" href="<?= e(View::query($params, ['page' => max(1, $query->page - 1)])) ?>">Previous</a></li>
  <li class="page-item disabled"><span class="page-link"><?= e($query->page) ?> / <?= e($pages) ?></span></li>
  <li class="page-item<?= $query->page >= $pages ? ' disabled' : '' ?>"><a class="page-link" id="page-next" href="<?= e(View::query($params, ['page' => min($pages, $query->page + 1)])) ?>">Next</a></li>
</ul></nav>
