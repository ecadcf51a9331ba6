<?php
/** @var Ems\Web\FleetQuery $query @var array $online @var array $histograms @var array $missing @var array $os
 *  @var array $ages @var int $staleCount @var array $stale @var array $lag */
use Ems\Web\FleetQuery;
use Ems\Web\Svg;

$clients = static fn (float $n): string => number_format($n) . ' clients';
$days = static fn (float $d): string => number_format($d, 1) . ' days';
$seconds = static function (float $s): string {
    return $s < 120 ? number_format($s) . ' s' : ($s < 7200 ? number_format($s / 60) . ' min' : number_format($s / 3600, 1) . ' h');
};
$buckets = static fn (array $counts): array => array_map(static fn (int $i, int $n): array => [($i * 10) . '–' . ($i * 10 + 10), $n],
    array_keys($counts), $counts);
$totalOnline = array_sum(array_column($online, 1));
$total = $totalOnline + array_sum(array_column($online, 2));
?>
<div class="d-flex align-items-baseline gap-3 mb-3">
  <h1 class="h5 mb-0">Fleet health</h1>
  <span class="text-body-secondary small" id="fleet-total"><?= e(number_format($total)) ?> clients, <?= e(number_format($totalOnline)) ?> online</span>
</div>
<div class="row g-3 ems-fleet">
  <div class="col-xl-6"><div class="card card-body">
    <h2 class="h6">Online and offline per server</h2>
    <?= Svg::bars('chart-online', 'Online and offline clients per server',
        'For each server, how many of its clients are online (first bar) and offline (second bar).',
        array_map(static fn (array $r): array => [$r[0], [$r[1], $r[2]]], $online),
        [['online', 'ems-ok'], ['offline', 'ems-off']]) ?>
  </div></div>
  <div class="col-xl-6"><div class="card card-body">
    <h2 class="h6">Sync lag per server</h2>
    <?= Svg::bars('chart-lag', 'Time since each server last synced',
        'For each server, the time since its last sync into this database; a long bar is a server whose clients shown here may be out of date.',
        array_map(static fn (array $r): array => [$r[0], [$r[1] ?? 0.0]], array_filter($lag, static fn (array $r): bool => $r[1] !== null)),
        [['lag', 'ems-warn']], $seconds) ?>
    <?php foreach (array_filter($lag, static fn (array $r): bool => $r[1] === null) as [$name]): ?>
      <div class="small text-body-secondary ems-never-synced"><?= e($name) ?>: never synced</div>
    <?php endforeach; ?>
  </div></div>
  <?php foreach (FleetQuery::METRICS as $metric => $label): ?>
    <div class="col-xl-4 col-lg-6"><div class="card card-body">
      <h2 class="h6"><?= e($label) ?> use (%)</h2>
      <?= Svg::histogram('chart-' . $metric, $label . ' use across the fleet',
          'How many clients report a ' . strtolower($label) . ' use in each 10 % band, from their newest system information.',
          $buckets($histograms[$metric]), 'ems-' . $metric) ?>
      <?php if ($missing[$metric] > 0): ?>
        <div class="small text-body-secondary" id="missing-<?= e($metric) ?>"><?= e(number_format($missing[$metric])) ?> clients without a figure</div>
      <?php endif; ?>
    </div></div>
  <?php endforeach; ?>
  <div class="col-xl-4 col-lg-6"><div class="card card-body">
    <h2 class="h6">Operating systems</h2>
    <?= Svg::bars('chart-os', 'Operating systems in the fleet', 'How many clients run each operating system, the most common first.',
        array_map(static fn (array $r): array => [$r[0], [$r[1]]], $os), [['clients', 'ems-os']], $clients) ?>
  </div></div>
  <div class="col-xl-4 col-lg-6"><div class="card card-body">
    <h2 class="h6">Last seen</h2>
    <?= Svg::bars('chart-ages', 'How long ago clients were last seen', 'How many clients were last seen within a day, a week, a month, or longer ago.',
        array_map(static fn (array $r): array => [$r[0], [$r[1]]], $ages), [['clients', 'ems-age']], $clients) ?>
  </div></div>
  <div class="col-xl-4 col-lg-6"><div class="card card-body">
    <form method="get" action="/fleet" class="d-flex align-items-center gap-2 mb-2" id="fleet-stale-form">
      <h2 class="h6 mb-0" id="fleet-stale-count"><?= e(number_format($staleCount)) ?> not seen for more than</h2>
      <select class="form-select form-select-sm w-auto ems-autosubmit" name="days" id="fleet-days">
        <?php foreach (FleetQuery::DAYS as $d): ?>
          <option value="<?= e($d) ?>"<?= $query->days === $d ? ' selected' : '' ?>><?= e($d) ?> day<?= $d === 1 ? '' : 's' ?></option>
        <?php endforeach; ?>
      </select>
      <noscript><button class="btn btn-sm btn-secondary" type="submit">Show</button></noscript>
    </form>
    <?= Svg::bars('chart-stale', 'Clients not seen for the longest', 'The ' . FleetQuery::STALE_SHOWN
        . ' clients not seen for the longest time, with the days since each was last seen.',
        array_map(static fn (array $r): array => [$r[0] . ' (' . $r[1] . ')', [$r[2]]], $stale), [['not seen', 'ems-off']], $days) ?>
  </div></div>
</div>
