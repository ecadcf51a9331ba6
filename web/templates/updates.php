<?php
/** @var Ems\Web\UpdatesQuery $query @var array $rows @var int $total @var int $pages @var array $servers @var array $recent
 *  @var bool $canAct @var int $max */
use Ems\Web\Session;
use Ems\Web\UpdatesPage;
use Ems\Web\View;

$params = $query->params();
?>
<h1 class="h5">OS updates</h1>
<p class="small text-body-secondary">Select clients on any server, check them all for pending OS updates, then apply the
  updates in waves from the check's page: a first small wave, then the rest a few at a time, stopping when a wave fails.
  Commands go out through this web's admin API: a client of a server whose broker it does not reach comes back refused.</p>
<form method="get" action="/updates" class="row g-2 align-items-center mb-2" id="updates-filter">
  <div class="col-auto">
    <select class="form-select form-select-sm" name="server" id="updates-server">
      <option value="">Every server</option>
      <?php foreach ($servers as $server): ?>
        <option value="<?= e($server['server_id']) ?>"<?= $query->server === $server['server_id'] ? ' selected' : '' ?>><?= e($server['name']) ?></option>
      <?php endforeach; ?>
    </select>
  </div>
  <div class="col-auto"><input class="form-control form-control-sm" type="search" name="q" id="updates-q" size="30"
       placeholder="Filter: host, client, user, OS, server" value="<?= e($query->q) ?>"></div>
  <div class="col-auto"><button class="btn btn-sm btn-primary" type="submit" id="updates-filter-apply">Apply</button></div>
  <div class="col-auto small text-body-secondary" id="updates-count"><?= e(number_format($total)) ?> clients match · page <?= e($query->page) ?> of <?= e($pages) ?></div>
</form>
<form method="post" action="/updates/check" id="check-form">
  <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
  <input type="hidden" name="server" value="<?= e($query->server) ?>">
  <input type="hidden" name="q" value="<?= e($query->q) ?>">
  <div class="table-responsive">
  <table class="table table-sm table-hover align-middle" id="updates-clients">
    <thead><tr>
      <th><?php if ($canAct): ?><input class="form-check-input" type="checkbox" id="pick-page" title="select this page"><?php endif; ?></th>
      <th>Server</th><th>Host</th><th>Client id</th><th>OS</th><th>State</th></tr></thead>
    <tbody>
    <?php foreach ($rows as $row): ?>
      <tr data-client="<?= e($row['client_id']) ?>">
        <td><?php if ($canAct): ?><input class="form-check-input ems-pick" type="checkbox" name="pick[]"
               value="<?= e(rawurlencode($row['server_id']) . '/' . rawurlencode($row['client_id'])) ?>"
               aria-label="select <?= e($row['hostname']) ?>"><?php endif; ?></td>
        <td><?= e($row['server_name']) ?></td>
        <td><?= e($row['hostname']) ?></td>
        <td class="font-monospace small"><?= e($row['client_id']) ?></td>
        <td><?= e(trim(($row['os'] ?? '') . ' ' . ($row['os_version'] ?? ''))) ?></td>
        <td><?= $row['online'] ? '<span class="badge text-bg-success">online</span>' : '<span class="badge text-bg-secondary">offline</span>' ?></td>
      </tr>
    <?php endforeach; ?>
    <?php if (!$rows): ?>
      <tr><td colspan="6" class="text-center text-body-secondary py-4">No client matches.</td></tr>
    <?php endif; ?>
    </tbody>
  </table>
  </div>
  <nav aria-label="pages"><ul class="pagination pagination-sm">
    <li class="page-item<?= $query->page <= 1 ? ' disabled' : '' ?>"><a class="page-link" href="<?= e(View::query($params, ['page' => max(1, $query->page - 1)])) ?>">Previous</a></li>
    <li class="page-item<?= $query->page >= $pages ? ' disabled' : '' ?>"><a class="page-link" href="<?= e(View::query($params, ['page' => min($pages, $query->page + 1)])) ?>">Next</a></li>
  </ul></nav>
  <?php if ($canAct && $total > 0): ?>
  <div class="card card-body mb-4">
    <div class="form-check mb-2">
      <input class="form-check-input" type="checkbox" name="all" value="1" id="pick-all">
      <label class="form-check-label" for="pick-all">Select all <?= e(number_format($total)) ?> matching clients (every page<?= $total > $max ? '; at most ' . e(number_format($max)) . ' at once: narrow the filter' : '' ?>)</label>
    </div>
    <label class="form-label" for="check-reason">Reason (required: each client's user is shown it, the audit trail keeps it with your name)</label>
    <textarea class="form-control mb-2" name="reason" id="check-reason" maxlength="500" rows="2" required></textarea>
    <div><button type="submit" class="btn btn-primary" id="check-start">Check for updates</button>
      <span class="small text-body-secondary ms-2" id="pick-count">0 selected</span></div>
  </div>
  <?php endif; ?>
</form>
<h2 class="h6">Recent checks and rollouts</h2>
<table class="table table-sm" id="update-batches">
  <thead><tr><th>#</th><th>What</th><th>Clients</th><th>State</th><th>By</th><th>Reason</th><th>Started</th></tr></thead>
  <tbody>
  <?php foreach ($recent as $batch): ?>
    <tr><td><a href="/updates/run?id=<?= e((int) $batch['id']) ?>"><?= e((int) $batch['id']) ?></a></td>
      <td><?= e(UpdatesPage::ACTIONS[$batch['action']] ?? $batch['action']) ?></td><td><?= e((int) $batch['clients']) ?></td>
      <td><?= e($batch['state']) ?><?= $batch['action'] === 'update-apply' ? ' · wave ' . e((int) $batch['current_wave']) . ' of ' . e((int) $batch['waves']) : '' ?></td>
      <td><?= e($batch['operator']) ?></td><td class="small"><?= e($batch['reason']) ?></td>
      <td class="small"><?= e(gmdate('Y-m-d H:i', (int) $batch['created'])) ?> UTC</td></tr>
  <?php endforeach; ?>
  <?php if (!$recent): ?>
    <tr><td colspan="7" class="text-center text-body-secondary">None yet.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
