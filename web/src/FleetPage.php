<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** The Fleet view: the fleet's health as charts drawn on the server (FleetQuery's aggregates, Svg). */
final class FleetPage
{
    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function show(): void
    {
        $query = FleetQuery::fromRequest($_GET);
        $now = microtime(true);
        [$histograms, $missing] = $query->histograms($this->db);
        [$staleCount, $stale] = $query->stale($this->db, $now);
        View::page('fleet', ['title' => 'Fleet', 'tab' => 'fleet', 'user' => $this->auth->user(), 'query' => $query,
            'online' => $query->onlineByServer($this->db), 'histograms' => $histograms, 'missing' => $missing,
            'os' => $query->osMix($this->db), 'ages' => $query->lastSeenAges($this->db, $now),
            'staleCount' => $staleCount, 'stale' => $stale, 'lag' => $query->syncLag($this->db, $now)]);
    }
}
