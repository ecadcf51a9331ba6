<?php
/** @var string $title @var string $body @var ?array $user @var string $tab */
use Ems\Web\App;
use Ems\Web\Auth;
use Ems\Web\HistoryTabs;
use Ems\Web\OpsFeeds;
use Ems\Web\Session;

$theme = App::theme();
$here = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
?>
<!doctype html>
<html lang="en" data-bs-theme="<?= e($theme) ?>">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title><?= e($title) ?> · EMS</title>
  <link rel="stylesheet" href="/vendor/bootstrap/css/bootstrap.min.css">
  <link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<nav class="navbar navbar-expand border-bottom mb-3 ems-nav">
  <div class="container-fluid">
    <span class="navbar-brand fw-semibold">EMS</span>
    <?php if ($user): ?>
      <ul class="navbar-nav me-auto">
        <li class="nav-item"><a class="nav-link<?= $tab === 'clients' ? ' active' : '' ?>" href="/clients">Clients</a></li>
        <li class="nav-item"><a class="nav-link<?= $tab === 'fleet' ? ' active' : '' ?>" href="/fleet">Fleet</a></li>
        <?php foreach (HistoryTabs::TABS as $name => $spec): if (Auth::allows($user, $spec['role'])): ?>
          <li class="nav-item"><a class="nav-link<?= $tab === $name ? ' active' : '' ?>" href="/<?= e($name) ?>"><?= e($spec['title']) ?></a></li>
        <?php endif; endforeach; ?>
        <li class="nav-item"><a class="nav-link<?= $tab === 'servers' ? ' active' : '' ?>" href="/servers">Servers</a></li>
        <li class="nav-item"><a class="nav-link<?= $tab === 'updates' ? ' active' : '' ?>" href="/updates">Updates</a></li>
        <li class="nav-item"><a class="nav-link<?= $tab === 'operations' ? ' active' : '' ?>" href="/operations" id="nav-operations">Operations</a></li>
        <?php $unread = OpsFeeds::unread($user); ?>
        <li class="nav-item"><a class="nav-link" href="/operations?view=inbox" id="nav-inbox"
           title="<?= $unread === null ? 'Your inbox (the admin API is not reachable)' : e($unread) . ' unread' ?>">Inbox<?php if ($unread): ?>
          <span class="badge rounded-pill text-bg-danger" id="inbox-badge"><?= e($unread > 99 ? '99+' : $unread) ?></span><?php endif; ?></a></li>
        <li class="nav-item"><a class="nav-link<?= $tab === 'reports' ? ' active' : '' ?>" href="/reports" id="nav-reports">Reports</a></li>
        <?php if (Auth::allows($user, 'admin')): ?>
          <li class="nav-item"><a class="nav-link<?= $tab === 'users' ? ' active' : '' ?>" href="/users">Users</a></li>
        <?php endif; ?>
      </ul>
    <?php else: ?>
      <span class="me-auto"></span>
    <?php endif; ?>
    <form method="post" action="/theme" class="d-flex me-2">
      <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
      <input type="hidden" name="back" value="<?= e($_SERVER['REQUEST_URI'] ?? '/') ?>">
      <input type="hidden" name="theme" value="<?= $theme === 'dark' ? 'light' : 'dark' ?>">
      <button type="submit" class="btn btn-sm btn-outline-secondary" id="theme-switch"
              title="switch to the <?= $theme === 'dark' ? 'light' : 'dark' ?> theme"><?= $theme === 'dark' ? '☀ Light' : '☾ Dark' ?></button>
    </form>
    <?php if ($user): ?>
      <button type="button" class="btn btn-sm btn-outline-secondary me-2" id="keys-help" data-bs-toggle="modal"
              data-bs-target="#keys-dialog" title="Keyboard shortcuts (?)">?</button>
      <span class="navbar-text me-2" id="whoami"><?= e($user['display_name']) ?> <span class="badge text-bg-secondary"><?= e($user['role']) ?></span></span>
      <form method="post" action="/logout" class="d-flex">
        <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
        <button type="submit" class="btn btn-sm btn-outline-secondary" id="logout">Log out</button>
      </form>
    <?php endif; ?>
  </div>
</nav>
<main class="container-fluid">
<?= $body /* rendered by View::fragment from templates that escape with e() */ ?>
</main>
<?php if ($user): ?>
<div class="modal" id="keys-dialog" tabindex="-1" aria-labelledby="keys-title" aria-hidden="true">
  <div class="modal-dialog"><div class="modal-content">
    <div class="modal-header"><h2 class="modal-title h5" id="keys-title">Keyboard shortcuts</h2>
      <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Close"></button></div>
    <div class="modal-body">
      <p class="small text-body-secondary">Not while typing in a field (Esc leaves it).</p>
      <table class="table table-sm mb-0"><tbody id="keys-list"></tbody></table>
    </div>
  </div></div>
</div>
<?php endif; ?>
<script src="/vendor/jquery/jquery.min.js"></script>
<script src="/vendor/bootstrap/js/bootstrap.bundle.min.js"></script>
<script src="/assets/app.js"></script>
</body>
</html>
