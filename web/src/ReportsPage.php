<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * Saved reports (Reports): the list of the user's own, save (from a history tab), open and CSV export (GETs
 * that only redirect to the tab with the report's parameters: the tab's own role check and allowlists apply
 * there too), rename and delete (POSTs). A refused request changes nothing and says why.
 */
final class ReportsPage
{
    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function show(): void
    {
        $this->render('', 200);
    }

    /** POST /reports (name, tab, and the tab's parameters): save the tab's current view under a name. */
    public function save(): void
    {
        $this->change(fn (Reports $reports): string => '/reports?saved='
            . $reports->save(AuthPages::posted('name'), AuthPages::posted('tab'), $_POST));
    }

    /** POST /reports/rename (id, name) */
    public function rename(): void
    {
        $this->change(function (Reports $reports): string {
            $reports->rename($reports->own(AuthPages::posted('id')), AuthPages::posted('name'));
            return '/reports';
        });
    }

    /** POST /reports/delete (id) */
    public function delete(): void
    {
        $this->change(function (Reports $reports): string {
            $reports->delete($reports->own(AuthPages::posted('id')));
            return '/reports';
        });
    }

    /** GET /reports/open?id=N: the report's tab with its filters, sort and columns. */
    public function open(): void
    {
        $this->follow(false);
    }

    /** GET /reports/csv?id=N: the tab's CSV export with the report's filters, sort and columns. */
    public function csv(): void
    {
        $this->follow(true);
    }

    private function follow(bool $csv): void
    {
        $reports = new Reports($this->db, $this->auth->user());
        try {
            App::redirect($reports->url($reports->own(ListParams::text($_GET, 'id', 20)), $csv));
        } catch (ReportRefused $refused) {
            App::fail($refused->getCode(), $refused->getMessage(), $this->auth->user());
        }
    }

    /** Run one change; on success go where it says (303), else show the list with the reason (nothing changed). */
    private function change(callable $work): void
    {
        try {
            App::redirect($work(new Reports($this->db, $this->auth->user())));
        } catch (ReportRefused $refused) {
            $this->render($refused->getMessage(), $refused->getCode());
        }
    }

    private function render(string $error, int $status): void
    {
        $user = $this->auth->user();
        $reports = new Reports($this->db, $user);
        View::page('reports', ['title' => 'Reports', 'tab' => 'reports', 'user' => $user, 'error' => $error,
            'reports' => $reports->all(), 'reportsOf' => $reports, 'saved' => ListParams::text($_GET, 'saved', 20)], $status);
    }
}
