<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Clients tab: every server's clients, filtered, sorted and paged on the server; for operators and up,
 * "Look at screen": the client's screen now, through the latest-frame bridge, in the web user's name with a reason.
 */
final class ClientsPage
{
    public function __construct(private readonly PDO $db, private readonly Auth $auth, private readonly ?Config $config = null)
    {
    }

    public function show(): void
    {
        $query = ClientsQuery::fromRequest($_GET);
        [$rows, $total] = $query->run($this->db);
        View::page('clients', ['title' => 'Clients', 'tab' => 'clients', 'user' => $this->auth->user(),
            'query' => $query, 'rows' => $rows, 'total' => $total,
            'pages' => ListParams::pages($total, $query->perPage), 'canLook' => Auth::allows($this->auth->user(), 'operator'),
            'whyNot' => fn (string $server): ?string => Bridge::whyNot($this->config, $server),
            'maxReason' => Bridge::maxReason($this->config)]);
    }

    /** POST /clients/frame (server, client, reason): the client's screen now as a JPEG, or JSON {error, detail}. */
    public function frame(): void
    {
        $reason = Bridge::reason(AuthPages::posted('reason'), Bridge::maxReason($this->config));
        if ($reason === null) {
            View::json(['error' => 'Say why you look (1-' . Bridge::maxReason($this->config)
                . ' characters): the employee is shown it with your name, and the audit trail keeps it.'], 422);
            return;
        }
        $server = AuthPages::posted('server');
        $client = AuthPages::posted('client');
        $known = $this->db->prepare('SELECT 1 FROM snapshot_clients WHERE server_id = :server AND client_id = :client');
        $known->execute([':server' => $server, ':client' => $client]);
        if ($known->fetchColumn() === false) {
            View::json(['error' => 'No such client.'], 404);
            return;
        }
        $why = Bridge::whyNot($this->config, $server);
        $bridge = Bridge::fromConfig($this->config);
        if ($why !== null || $bridge === null) {
            View::json(['error' => $why ?? Bridge::NOT_SET_UP], 409);
            return;
        }
        [$code, $jpeg, $detail] = $bridge->run('latest_frame', [], [$client], (array) $this->auth->user(), $reason);
        if ($code === 0 && Bridge::isJpeg($jpeg)) {
            Bridge::sendJpeg($jpeg);
            return;
        }
        error_log('ems web: latest-frame bridge for ' . $client . ' exited ' . $code . ': ' . $detail);
        Bridge::refuse($code === 0 ? 1 : $code, $detail);
    }
}
