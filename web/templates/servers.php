<?php
/** @var array $servers @var string $server @var array $clients @var int $total @var int $page @var int $pages
 *  @var bool $canAct @var bool $apiOn @var array $actions @var string $webKeyId @var bool $canSetAuto @var int $autoMax
 *  @var callable $whyNot @var string $client the client to mark (from its row menu) */
use Ems\Web\View;

$when = static fn ($ts): string => (float) $ts > 0 ? gmdate('Y-m-d H:i:s', (int) $ts) . ' UTC' : 'never';
$badge = ['up to date' => 'success', 'syncing' => 'info', 'stale' => 'warning', 'never synced' => 'secondary'];
?>
<h1 class="h5">Servers</h1>
<?php if ($canAct && !$apiOn): ?>
  <div class="alert alert-secondary small" id="api-off">Actions are off: the admin API is not configured (`ems up` starts it when EMS_ADMIN_TOKEN is set).</div>
<?php endif; ?>
<?php if ($apiOn): ?>
<div class="card card-body mb-3 small" id="auto-sync">
  <div>Auto-sync (a full snapshot of the server behind this web's admin API, on a period):
    <strong id="auto-state">reading it from the sync worker…</strong></div>
  <?php if ($canSetAuto): ?>
  <form class="row g-2 align-items-end mt-1" id="auto-form">
    <div class="col-auto form-check ms-2"><input class="form-check-input" type="checkbox" id="auto-enabled">
      <label class="form-check-label" for="auto-enabled">On</label></div>
    <div class="col-auto"><label class="form-label mb-0" for="auto-every">every (minutes)</label>
      <input class="form-control form-control-sm" type="number" id="auto-every" min="1" max="<?= e($autoMax) ?>" step="1" required></div>
    <div class="col"><label class="form-label mb-0" for="auto-reason">Reason (kept in the audit trail with your name)</label>
      <input class="form-control form-control-sm" type="text" id="auto-reason" maxlength="500" required></div>
    <div class="col-auto"><button type="submit" class="btn btn-sm btn-outline-primary" id="auto-save">Save</button></div>
  </form>
  <div class="text-danger" id="auto-error"></div>
  <?php endif; ?>
</div>
<?php endif; ?>
<div class="table-responsive">
<table class="table table-sm align-middle" id="servers-table">
  <thead><tr><th>Server</th><th>Version</th><th>Clients</th><th>State</th><th>Last sync</th><th>Last full sync</th><th class="text-end">Rows synced</th><th></th></tr></thead>
  <tbody>
  <?php foreach ($servers as $row): ?>
    <tr data-server="<?= e($row['server_id']) ?>"<?= $row['server_id'] === $server ? ' class="table-active"' : '' ?>>
      <td><a href="<?= e(View::query([], ['server' => $row['server_id']])) ?>"><?= e($row['name']) ?></a>
        <div class="small text-body-secondary font-monospace"><?= e($row['server_id']) ?></div></td>
      <td><?= e($row['version']) ?></td>
      <td><?= e((int) $row['online']) ?> online / <?= e((int) $row['clients']) ?></td>
      <td><span class="badge text-bg-<?= e($badge[$row['state']] ?? 'secondary') ?> ems-sync-state"><?= e($row['state']) ?></span>
        <?php if ($row['web_key_id'] !== '' && $row['web_key_id'] !== $webKeyId): ?>
          <span class="badge text-bg-danger ems-other-key" title="This server seals chat text, log lines and file paths under another web key than this web UI holds: they show as unreadable. Copy this web UI's DATA/web/web.key to that server (ems sync init --join --web-key FILE).">other web key</span>
        <?php endif; ?></td>
      <td class="small ems-last-sync" data-ts="<?= e((float) $row['last_sync']) ?>"><?= e($when($row['last_sync'])) ?></td>
      <td class="small"><?= e($when($row['last_full_sync'])) ?></td>
      <td class="text-end"><?= e(number_format((int) $row['rows_synced'])) ?></td>
      <td class="text-end"><?php if ($canAct && $apiOn && ($why = $whyNot((string) $row['server_id'])) !== null): ?>
        <span class="d-inline-block" tabindex="0" title="<?= e($why) ?>"><button type="button" class="btn btn-sm btn-outline-secondary ems-act-off" disabled>Sync This Server</button></span>
      <?php elseif ($canAct && $apiOn): ?>
        <button type="button" class="btn btn-sm btn-outline-primary ems-act" data-kind="sync" data-label="Sync This Server"
                data-target="<?= e($row['name']) ?>">Sync This Server</button>
        <span class="small ms-2 ems-sync-progress"></span>
      <?php endif; ?></td>
    </tr>
  <?php endforeach; ?>
  <?php if (!$servers): ?>
    <tr><td colspan="8" class="text-center text-body-secondary py-4">No server has synced into this database yet.</td></tr>
  <?php endif; ?>
  </tbody>
</table>
</div>
<?php if ($server !== ''): ?>
<h2 class="h6 mt-4" id="server-clients-title">Clients of <?= e(array_column($servers, 'name', 'server_id')[$server] ?? $server) ?>
  <span class="text-body-secondary small">· <?= e(number_format($total)) ?> · page <?= e($page) ?> of <?= e($pages) ?></span></h2>
<div class="table-responsive">
<table class="table table-sm table-hover align-middle" id="server-clients" data-server="<?= e($server) ?>">
  <thead><tr><th>Host</th><th>Client id</th><th>User</th><th>OS</th><th>State</th><th>Actions</th><th>Last command</th></tr></thead>
  <tbody>
  <?php $why = $whyNot($server); foreach ($clients as $row): ?>
    <tr data-client="<?= e($row['client_id']) ?>"<?= $row['client_id'] === $client ? ' class="table-active ems-marked"' : '' ?>>
      <td class="ems-host text-nowrap"><?= e($row['hostname'] ?: $row['label']) ?></td>
      <td class="font-monospace small text-nowrap"><?= e($row['client_id']) ?></td>
      <td><?= e($row['logged_in_user']) ?></td>
      <td><?= e(trim(($row['os'] ?? '') . ' ' . ($row['os_version'] ?? ''))) ?></td>
      <td><?= $row['online'] ? '<span class="badge text-bg-success">online</span>' : '<span class="badge text-bg-secondary">offline</span>' ?></td>
      <td class="text-nowrap"><?php if ($canAct && $apiOn && $why !== null): ?>
        <span class="d-inline-block" tabindex="0" title="<?= e($why) ?>"><?php foreach ($actions as $label): ?><button type="button" class="btn btn-sm btn-outline-secondary ems-act-off" disabled><?= e($label) ?></button> <?php endforeach; ?></span>
      <?php elseif ($canAct && $apiOn): foreach ($actions as $key => $label): ?>
        <button type="button" class="btn btn-sm btn-outline-secondary ems-act" data-kind="<?= e($key) ?>" data-label="<?= e($label) ?>"
                data-target="<?= e($row['hostname'] ?: $row['client_id']) ?>"><?= e($label) ?></button>
      <?php endforeach; endif; ?></td>
      <td class="small ems-command-status"></td>
    </tr>
  <?php endforeach; ?>
  </tbody>
</table>
</div>
<nav aria-label="pages"><ul class="pagination pagination-sm">
  <li class="page-item<?= $page <= 1 ? ' disabled' : '' ?>"><a class="page-link" href="<?= e(View::query(['server' => $server], ['page' => max(1, $page - 1)])) ?>">Previous</a></li>
  <li class="page-item<?= $page >= $pages ? ' disabled' : '' ?>"><a class="page-link" href="<?= e(View::query(['server' => $server], ['page' => min($pages, $page + 1)])) ?>">Next</a></li>
</ul></nav>
<?php endif; ?>
<div class="modal" id="act-dialog" tabindex="-1" aria-labelledby="act-title" aria-hidden="true">
  <div class="modal-dialog"><form class="modal-content" id="act-form">
    <div class="modal-header"><h2 class="modal-title h5" id="act-title">Confirm</h2>
      <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Cancel"></button></div>
    <div class="modal-body">
      <p id="act-question"></p>
      <label class="form-label" for="act-reason">Reason (required: the user is shown it, the audit trail keeps it with your name)</label>
      <textarea class="form-control" id="act-reason" maxlength="500" rows="2" required></textarea>
      <div class="text-danger small mt-2" id="act-error"></div>
    </div>
    <div class="modal-footer">
      <button type="button" class="btn btn-secondary" data-bs-dismiss="modal" id="act-cancel">Cancel</button>
      <button type="submit" class="btn btn-danger" id="act-confirm">Confirm</button>
    </div>
  </form></div>
</div>
