<?php
/** @var array $reports @var Ems\Web\Reports $reportsOf @var string $error @var string $saved */
use Ems\Web\HistoryTabs;
use Ems\Web\Reports;
use Ems\Web\Session;

$summary = static function (array $params): string {
    $parts = [];
    foreach (['q' => 'text', 'server' => 'server', 'client' => 'client'] as $key => $label) {
        if (($params[$key] ?? '') !== '') {
            $parts[] = $label . ' "' . $params[$key] . '"';
        }
    }
    $parts[] = 'sorted by ' . ($params['sort'] ?? '?') . ' ' . ($params['dir'] ?? '');
    $parts[] = ($params['cols'] ?? '') === '' ? 'every column' : 'columns ' . str_replace(',', ', ', $params['cols']);
    return implode(' · ', $parts);
};
?>
<h1 class="h5">Saved reports</h1>
<p class="text-body-secondary small">Yours only. Save one from a history tab (its filters, sort and columns) with
  "Save as report"; opening one shows what the tab shows you now, and never more than your role may see.</p>
<?php if ($error !== ''): ?><div class="alert alert-danger" id="reports-error"><?= e($error) ?></div><?php endif; ?>
<table class="table table-sm align-middle" id="reports-table">
  <thead><tr><th scope="col">Name</th><th scope="col">Tab</th><th scope="col">What it shows</th><th scope="col">Saved</th><th scope="col">Actions</th></tr></thead>
  <tbody>
  <?php foreach ($reports as $report):
      $known = isset(HistoryTabs::TABS[$report['tab']]);
      $allowed = $reportsOf->mayOpen($report['tab']); ?>
    <tr data-report="<?= e($report['id']) ?>" class="<?= (string) $report['id'] === $saved ? 'table-success' : '' ?>">
      <td class="ems-report-name"><?= e($report['name']) ?></td>
      <td><?= e($known ? HistoryTabs::TABS[$report['tab']]['title'] : $report['tab']) ?></td>
      <td class="small"><?= e($summary($report['params'])) ?></td>
      <td class="small ems-time" data-ts="<?= e($report['updated']) ?>"><?= e(gmdate('Y-m-d H:i:s', (int) $report['updated'])) ?> UTC</td>
      <td class="text-nowrap">
        <?php if ($allowed): ?>
          <a class="btn btn-sm btn-primary ems-report-open" href="/reports/open?id=<?= e($report['id']) ?>">Open</a>
          <a class="btn btn-sm btn-outline-secondary ems-report-csv" href="/reports/csv?id=<?= e($report['id']) ?>">CSV</a>
        <?php else: ?>
          <span class="badge text-bg-secondary">not for your role</span>
        <?php endif; ?>
        <form method="post" action="/reports/rename" class="d-inline-flex gap-1 ems-report-rename">
          <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
          <input type="hidden" name="id" value="<?= e($report['id']) ?>">
          <input class="form-control form-control-sm" type="text" name="name" value="<?= e($report['name']) ?>"
                 maxlength="<?= e(Reports::MAX_NAME) ?>" required size="16" aria-label="New name">
          <button class="btn btn-sm btn-outline-secondary" type="submit">Rename</button>
        </form>
        <form method="post" action="/reports/delete" class="d-inline ems-report-delete">
          <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
          <input type="hidden" name="id" value="<?= e($report['id']) ?>">
          <button class="btn btn-sm btn-outline-danger" type="submit">Delete</button>
        </form>
      </td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$reports): ?>
    <tr><td colspan="5" class="text-center text-body-secondary py-4">No saved reports yet.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
