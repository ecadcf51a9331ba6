<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** The Clients tab: every server's clients, filtered, sorted and paged on the server. */
final class ClientsPage
{
    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function show(): void
    {
        $query = ClientsQuery::fromRequest($_GET);
        [$rows, $total] = $query->run($this->db);
        View::page('clients', ['title' => 'Clients', 'tab' => 'clients', 'user' => $this->auth->user(),
            'query' => $query, 'rows' => $rows, 'total' => $total,
            'pages' => ListParams::pages($total, $query->perPage)]);
    }
}
