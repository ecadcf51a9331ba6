<?php
/** @var Ems\Web\HistoryQuery $query @var array $rows @var int $total @var int $pages @var array $servers @var string $tab
 *  @var ?array $pictures (the Captures tab: maxReason, and per row server, id, whyNot) */
use Ems\Web\HistoryQuery;
use Ems\Web\Session;
use Ems\Web\View;

$params = $query->params();
$shown = $query->shown();
$choice = [];  // the column chooser: key => [label, shown]
foreach ($query->columns as $key => $column) {
    $choice[$key] = [$column[0], isset($shown[$key])];
}
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
<?= View::fragment('filter_bar', ['action' => '/' . $tab, 'id' => 'history-filter', 'countId' => 'history-count',
    'q' => $query->q, 'placeholder' => 'Filter', 'size' => 30,
    'fields' => [['select', 'server', 'filter-server', ['' => 'Every server'] + array_column($servers, 'name', 'server_id'), $query->server],
        ['input', 'client', 'filter-client', 'Client id', $query->client, 16]],
    'columns' => $choice,
    'perPage' => $query->perPage, 'sort' => $query->sort, 'dir' => $query->dir, 'csv' => '/' . $tab . '.csv' . View::query($csv, []),
    'count' => ($query->capped ? 'more than ' . number_format(HistoryQuery::COUNT_CAP) : number_format($total))
        . ' rows · page ' . $query->page . ' of ' . $pages]) ?>
<form method="post" action="/reports" class="row g-2 align-items-center mb-3" id="report-save">
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <input type="hidden" name="tab" value="<?= e($tab) ?>">
  <?php foreach (array_diff_key($params, ['page' => 0]) as $name => $value): ?>
    <input type="hidden" name="<?= e($name) ?>" value="<?= e($value) ?>">
  <?php endforeach; ?>
  <div class="col-auto"><input class="form-control form-control-sm" type="text" name="name" id="report-name" maxlength="100"
       required placeholder="Report name" size="24" aria-label="Report name"></div>
  <div class="col-auto"><button class="btn btn-sm btn-outline-primary" type="submit" id="report-save-button">Save as report</button></div>
</form>
<?php if ($pictures !== null) { echo View::fragment('capture_pictures', ['maxReason' => $pictures['maxReason'], 'reason' => $grant['reason'] ?? '']); } ?>
<div class="table-responsive">
<table class="table table-sm table-hover align-middle ems-history" id="history-table" data-tab="<?= e($tab) ?>">
  <thead><tr>
    <?php foreach ($shown as $key => $column):
        $sealed = str_starts_with($column[2], 'sealed:');
        $active = $query->sort === $key;
        $dir = $active && $query->dir === 'desc' ? 'asc' : 'desc'; ?>
      <th scope="col" data-column="<?= e($key) ?>"><?php if ($sealed): ?><?= e($column[0]) ?><?php else: ?><a class="ems-sort<?= $active ? ' active' : '' ?>" data-sort="<?= e($key) ?>"
         href="<?= e(View::query($params, ['sort' => $key, 'dir' => $dir, 'page' => 1])) ?>"><?= e($column[0]) ?><?= $active ? ($query->dir === 'asc' ? ' ▲' : ' ▼') : '' ?></a><?php endif; ?></th>
    <?php endforeach; ?>
    <?php if ($pictures !== null): ?><th scope="col">Picture</th><?php endif; ?>
  </tr></thead>
  <tbody>
  <?php foreach ($rows as $i => $row): ?>
    <tr>
      <?php foreach ($shown as $key => $column): ?>
        <td class="ems-col-<?= e($key) ?>"><?= $cell($column, $row[$key]) ?></td>
      <?php endforeach; ?>
      <?php if ($pictures !== null): $picture = $pictures['rows'][$i]; ?>
        <td class="ems-picture"<?php if ($picture['whyNot'] === null): ?> data-server="<?= e($picture['server']) ?>" data-capture="<?= e($picture['id']) ?>"><span class="text-body-secondary small">hidden</span><?php else: ?> title="<?= e($picture['whyNot']) ?>"><span class="text-body-secondary small">not here</span><?php endif; ?></td>
      <?php endif; ?>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="<?= e(count($shown) + ($pictures !== null ? 1 : 0)) ?>" class="text-center text-body-secondary py-4">Nothing matches.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
<nav aria-label="pages"><ul class="pagination pagination-sm" id="history-pages">
  <li class="page-item<?= $query->page <= 1 ? ' disabled' : '' ?>"><a class="page-link" id="page-prev" href="<?= e(View::query($params, ['page' => max(1, $query->page - 1)])) ?>">Previous</a></li>
  <li class="page-item disabled"><span class="page-link"><?= e($query->page) ?> / <?= e($pages) ?></span></li>
  <li class="page-item<?= $query->page >= $pages ? ' disabled' : '' ?>"><a class="page-link" id="page-next" href="<?= e(View::query($params, ['page' => min($pages, $query->page + 1)])) ?>">Next</a></li>
</ul></nav>
