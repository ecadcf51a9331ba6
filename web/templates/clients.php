<?php
/** @var Ems\Web\ClientsQuery $query @var array $rows @var int $total @var int $pages
 *  @var bool $canLook @var callable $whyNot @var int $maxReason */
use Ems\Web\Auth;
use Ems\Web\ClientsQuery;
use Ems\Web\HistoryTabs;
use Ems\Web\View;

$params = $query->params();
$headers = ['server' => 'Server', 'host' => 'Host', 'client' => 'Client id', 'user' => 'User', 'os' => 'OS',
    'online' => 'State', 'cpu' => 'CPU', 'memory' => 'Memory', 'disk' => 'Disk', 'last_seen' => 'Last seen'];
// a client row's context actions: its history, filtered by it, in every tab this user may read
$jumps = array_filter(['sessions', 'logs', 'captures', 'messages', 'fileops'],
    static fn (string $name): bool => Auth::allows($user, HistoryTabs::get($name)['role']));
$percent = static function (?float $value): string {
    if ($value === null) {
        return '<span class="text-body-secondary">–</span>';
    }
    $level = $value >= 90 ? 'danger' : ($value >= 70 ? 'warning' : 'ok');
    return '<meter class="ems-meter ems-' . e($level) . '" min="0" max="100" low="70" high="90" optimum="0" value="'
        . e(round($value, 1)) . '"></meter> <span class="ems-num">' . e(number_format($value, 0)) . ' %</span>';
};
?>
<?= View::fragment('filter_bar', ['action' => '/clients', 'id' => 'clients-filter', 'countId' => 'clients-count',
    'q' => $query->q, 'placeholder' => 'Filter: host, client, user, OS, server', 'size' => 36,
    'fields' => [['select', 'state', 'filter-state', ['all' => 'Online and offline', 'online' => 'Online', 'offline' => 'Offline'], $query->state]],
    'columns' => null, 'perPage' => $query->perPage, 'sort' => $query->sort, 'dir' => $query->dir, 'csv' => null,
    'count' => number_format($total) . ' clients · page ' . $query->page . ' of ' . $pages]) ?>
<div class="table-responsive">
<table class="table table-sm table-hover align-middle ems-clients" id="clients-table">
  <thead><tr>
    <?php foreach ($headers as $key => $label):
        $active = $query->sort === $key;
        $dir = $active && $query->dir === 'asc' ? 'desc' : 'asc'; ?>
      <th scope="col"><a class="ems-sort<?= $active ? ' active' : '' ?>" data-sort="<?= e($key) ?>"
         href="<?= e(View::query($params, ['sort' => $key, 'dir' => $dir, 'page' => 1])) ?>"><?= e($label) ?><?= $active ? ($query->dir === 'asc' ? ' ▲' : ' ▼') : '' ?></a></th>
    <?php endforeach; ?>
    <?php if ($canLook): ?><th scope="col">Screen</th><?php endif; ?>
    <th scope="col"><span class="visually-hidden">Actions</span></th>
  </tr></thead>
  <tbody>
  <?php foreach ($rows as $row): ?>
    <tr data-server="<?= e($row['server_id']) ?>" data-client="<?= e($row['client_id']) ?>">
      <td><?= e($row['server_name']) ?></td>
      <td class="ems-host"><?= e($row['hostname'] ?: $row['label']) ?></td>
      <td class="font-monospace small"><?= e($row['client_id']) ?></td>
      <td><?= e($row['logged_in_user']) ?></td>
      <td><?= e(trim(($row['os'] ?? '') . ' ' . ($row['os_version'] ?? ''))) ?></td>
      <td><?= $row['online'] ? '<span class="badge text-bg-success">online</span>' : '<span class="badge text-bg-secondary">offline</span>' ?></td>
      <td><?= $percent($row['cpu'] === null ? null : (float) $row['cpu']) ?></td>
      <td><?= $percent($row['memory'] === null ? null : (float) $row['memory']) ?></td>
      <td><?= $percent($row['disk'] === null ? null : (float) $row['disk']) ?></td>
      <td class="small ems-time" data-ts="<?= e($row['last_seen']) ?>"><?= e(gmdate('Y-m-d H:i:s', (int) $row['last_seen'])) ?> UTC</td>
      <?php if ($canLook): $why = $whyNot((string) $row['server_id']); ?>
        <td class="text-nowrap"><?php if ($why === null): ?>
          <button type="button" class="btn btn-sm btn-outline-primary ems-look" data-target="<?= e($row['hostname'] ?: $row['client_id']) ?>">Look at screen</button>
        <?php else: ?>
          <span class="d-inline-block" tabindex="0" title="<?= e($why) ?>"><button type="button" class="btn btn-sm btn-outline-secondary ems-look-off" disabled>Look at screen</button></span>
        <?php endif; ?></td>
      <?php endif; ?>
      <td class="dropdown ems-row-actions">
        <button type="button" class="btn btn-sm btn-link ems-row-menu" data-bs-toggle="dropdown" aria-expanded="false"
                data-bs-popper-config='{"strategy":"fixed"}'
                aria-label="Actions for <?= e($row['hostname'] ?: $row['client_id']) ?>">⋮</button>
        <ul class="dropdown-menu dropdown-menu-end">
          <li><h6 class="dropdown-header"><?= e($row['hostname'] ?: $row['client_id']) ?></h6></li>
          <?php foreach ($jumps as $name): ?>
            <li><a class="dropdown-item" data-jump="<?= e($name) ?>" href="/<?= e($name) ?><?= e(View::query(['server' => $row['server_id'], 'client' => $row['client_id']], [])) ?>"><?= e(HistoryTabs::get($name)['title']) ?></a></li>
          <?php endforeach; ?>
          <?php if (Auth::allows($user, 'operator')): ?>
            <li><hr class="dropdown-divider"></li>
            <li><a class="dropdown-item" data-jump="servers" href="/servers<?= e(View::query(['server' => $row['server_id'], 'client' => $row['client_id']], [])) ?>">Servers tab: reboot, shutdown, updates</a></li>
          <?php endif; ?>
        </ul>
      </td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$rows): ?>
    <tr><td colspan="<?= $canLook ? 12 : 11 ?>" class="text-center text-body-secondary py-4">No clients match.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
<nav aria-label="pages"><ul class="pagination pagination-sm" id="clients-pages">
  <li class="page-item<?= $query->page <= 1 ? ' disabled' : '' ?>"><a class="page-link" id="page-prev" href="<?= e(View::query($params, ['page' => max(1, $query->page - 1)])) ?>">Previous</a></li>
  <li class="page-item disabled"><span class="page-link"><?= e($query->page) ?> / <?= e($pages) ?></span></li>
  <li class="page-item<?= $query->page >= $pages ? ' disabled' : '' ?>"><a class="page-link" id="page-next" href="<?= e(View::query($params, ['page' => min($pages, $query->page + 1)])) ?>">Next</a></li>
</ul></nav>
<?php if ($canLook): ?>
<div class="modal" id="look-dialog" tabindex="-1" aria-labelledby="look-title" aria-hidden="true">
  <div class="modal-dialog modal-xl"><form class="modal-content" id="look-form">
    <div class="modal-header"><h2 class="modal-title h5" id="look-title">Look at screen</h2>
      <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Close"></button></div>
    <div class="modal-body">
      <p id="look-question"></p>
      <label class="form-label" for="look-reason">Reason (required: the employee is shown it with your name, the audit trail keeps both)</label>
      <textarea class="form-control" id="look-reason" maxlength="<?= e($maxReason) ?>" rows="2" required></textarea>
      <div class="text-danger small mt-2" id="look-error"></div>
      <div class="text-body-secondary small mt-1" id="look-detail"></div>
      <div class="small mt-2" id="look-status"></div>
      <img class="img-fluid mt-2 d-none border" id="look-image" alt="the client's screen">
    </div>
    <div class="modal-footer">
      <button type="button" class="btn btn-secondary" data-bs-dismiss="modal" id="look-cancel">Close</button>
      <button type="submit" class="btn btn-primary" id="look-confirm">Look</button>
    </div>
  </form></div>
</div>
<?php endif; ?>
