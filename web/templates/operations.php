<?php
/** @var string $view @var array $views @var bool $canAct @var bool $apiOn @var string $me @var ?array $flash
 *  @var string $error @var array $rows @var array $ended @var int $perPage @var int $maxReason */
use Ems\Web\View;

$when = static fn ($ts): string => (float) $ts > 0 ? gmdate('Y-m-d H:i', (int) $ts) . ' UTC' : '—';
$runBadge = ['running' => 'info', 'held' => 'warning', 'finished' => 'success', 'halted' => 'danger', 'cancelled' => 'secondary'];
$who = static fn (array $run): string => (string) ($run['args']['operator']['name'] ?? $run['sender'] ?? '');
/** a run's progress: finished targets over all, drawn as SVG (no inline style under the CSP) */
$progress = static function (array $run): string {
    $counts = is_array($run['counts'] ?? null) ? $run['counts'] : [];
    $total = max(1, (int) ($run['count'] ?? 0));
    $ok = (int) ($counts['done'] ?? 0);
    $bad = (int) ($counts['failed'] ?? 0) + (int) ($counts['expired'] ?? 0) + (int) ($counts['error'] ?? 0);
    $other = (int) ($counts['cancelled'] ?? 0) + (int) ($counts['skipped'] ?? 0);
    $x = 0.0;
    $svg = '';
    foreach ([[$ok, 'ems-ok'], [$bad, 'ems-fail'], [$other, 'ems-off']] as [$n, $class]) {
        $w = 100.0 * $n / $total;
        $svg .= $n > 0 ? sprintf('<rect class="ems-bar %s" x="%.2f" y="0" width="%.2f" height="10"></rect>', $class, $x, $w) : '';
        $x += $w;
    }
    $label = ($ok + $bad + $other) . ' of ' . (int) ($run['count'] ?? 0) . ' finished';
    return '<svg class="ems-progress" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="' . e($label)
        . '"><title>' . e($label) . '</title><rect class="ems-track" x="0" y="0" width="100" height="10"></rect>' . $svg . '</svg>'
        . '<span class="small text-body-secondary ms-2 ems-progress-label">' . e($label) . '</span>';
};
?>
<?php $severityBadge = ['critical' => 'danger', 'warning' => 'warning', 'info' => 'info']; ?>
<h1 class="h5">Operations</h1>
<ul class="nav nav-tabs mb-3" id="ops-views">
  <?php foreach ($views as $key => $label): ?>
    <li class="nav-item"><a class="nav-link<?= $key === $view ? ' active' : '' ?>" id="ops-tab-<?= e($key) ?>"
       href="/operations<?= e(View::query([], ['view' => $key])) ?>"><?= e($label) ?><?php if ($key === 'inbox' && ($navUnread = \Ems\Web\OpsFeeds::unread($user))): ?>
         <span class="badge rounded-pill text-bg-danger ems-unread"><?= e($navUnread) ?></span><?php endif; ?></a></li>
  <?php endforeach; ?>
</ul>
<?php if (!$apiOn): ?>
  <div class="alert alert-secondary small" id="api-off">Nothing to show: the admin API is not configured (`ems up` starts it when EMS_ADMIN_TOKEN is set).</div>
<?php endif; ?>
<?php if ($flash): ?>
  <div class="alert alert-<?= e($flash[0]) ?> small" id="ops-flash" role="status"><?= e($flash[1]) ?></div>
<?php endif; ?>
<?php if ($error !== '' && $apiOn): ?>
  <div class="alert alert-danger small" id="ops-error" role="alert"><?= e($error) ?></div>
<?php endif; ?>
<?php if ($apiOn) {
    $part = match (true) {
        $view === 'bulk' && isset($runDetail) => 'run',
        $view === 'broadcasts' && isset($broadcast) => 'broadcast',
        default => $view,
    };
    require __DIR__ . '/ops_' . $part . '.php';
} ?>
