<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * Every route: "METHOD /path" -> [page class, method, least role or null for anyone].
 * GET routes only read; every state change is a POST (CSRF-checked by App before it runs).
 */
final class Router
{
    public const ROUTES = [
        'GET /' => [AuthPages::class, 'home', null],
        'GET /login' => [AuthPages::class, 'loginForm', null],
        'POST /login' => [AuthPages::class, 'login', null],
        'POST /logout' => [AuthPages::class, 'logout', 'viewer'],
        'POST /theme' => [AuthPages::class, 'theme', null],
        'GET /clients' => [ClientsPage::class, 'show', 'viewer'],
        'POST /clients/frame' => [ClientsPage::class, 'frame', 'operator'],
        'GET /fleet' => [FleetPage::class, 'show', 'viewer'],
        'GET /servers' => [ServersPage::class, 'show', 'viewer'],
        'GET /servers/state' => [ServersPage::class, 'state', 'viewer'],
        'GET /servers/command' => [ServersPage::class, 'command', 'operator'],
        'POST /servers/sync' => [ServersPage::class, 'sync', 'operator'],
        'POST /servers/action' => [ServersPage::class, 'act', 'operator'],
        'GET /servers/auto' => [ServersPage::class, 'auto', 'viewer'],
        'POST /servers/auto' => [ServersPage::class, 'setAuto', 'admin'],
        'GET /updates' => [UpdatesPage::class, 'show', 'viewer'],
        'GET /updates/run' => [UpdatesPage::class, 'run', 'viewer'],
        'GET /updates/state' => [UpdatesPage::class, 'state', 'viewer'],
        'POST /updates/check' => [UpdatesPage::class, 'check', 'operator'],
        'POST /updates/apply' => [UpdatesPage::class, 'apply', 'operator'],
        'POST /updates/step' => [UpdatesPage::class, 'step', 'operator'],
        'GET /operations' => [OperationsPage::class, 'show', 'viewer'],
        'POST /operations/decide' => [OperationsPage::class, 'decide', 'operator'],
        'POST /operations/cancel' => [OperationsPage::class, 'cancel', 'operator'],
        'POST /operations/run' => [OperationsPage::class, 'run', 'operator'],
        'POST /operations/inbox-read' => [OpsFeeds::class, 'markRead', 'viewer'],
        'POST /operations/ack' => [OpsFeeds::class, 'ack', 'operator'],
        'POST /operations/broadcast' => [OpsFeeds::class, 'broadcast', 'operator'],
        'POST /operations/schedule' => [OpsFeeds::class, 'addSchedule', 'operator'],
        'POST /operations/schedule-change' => [OpsFeeds::class, 'changeSchedule', 'operator'],
        'GET /sessions' => [HistoryPage::class, 'sessions', 'viewer'],
        'GET /sessions.csv' => [HistoryPage::class, 'sessionsCsv', 'viewer'],
        'GET /security' => [HistoryPage::class, 'security', 'viewer'],
        'GET /security.csv' => [HistoryPage::class, 'securityCsv', 'viewer'],
        'GET /logs' => [HistoryPage::class, 'logs', 'viewer'],
        'GET /logs.csv' => [HistoryPage::class, 'logsCsv', 'viewer'],
        'GET /fileops' => [HistoryPage::class, 'fileops', 'operator'],
        'GET /fileops.csv' => [HistoryPage::class, 'fileopsCsv', 'operator'],
        'GET /messages' => [HistoryPage::class, 'messages', 'operator'],
        'GET /messages.csv' => [HistoryPage::class, 'messagesCsv', 'operator'],
        'GET /captures' => [HistoryPage::class, 'captures', 'operator'],
        'GET /captures.csv' => [HistoryPage::class, 'capturesCsv', 'operator'],
        'GET /reports' => [ReportsPage::class, 'show', 'viewer'],
        'POST /reports' => [ReportsPage::class, 'save', 'viewer'],
        'GET /reports/open' => [ReportsPage::class, 'open', 'viewer'],
        'GET /reports/csv' => [ReportsPage::class, 'csv', 'viewer'],
        'POST /reports/rename' => [ReportsPage::class, 'rename', 'viewer'],
        'POST /reports/delete' => [ReportsPage::class, 'delete', 'viewer'],
        'POST /captures/previews' => [CapturePictures::class, 'previews', 'operator'],
        'POST /captures/image' => [CapturePictures::class, 'image', 'operator'],
        'POST /history/grant' => [HistoryPage::class, 'grant', 'operator'],
        'GET /users' => [UsersPage::class, 'show', 'admin'],
        'POST /users' => [UsersPage::class, 'add', 'admin'],
    ];

    /** [class, method, role] for the request, or null (404); 405 is told apart by knownPath(). */
    public static function resolve(string $method, string $path): ?array
    {
        return self::ROUTES[$method . ' ' . $path] ?? null;
    }

    public static function knownPath(string $path): bool
    {
        return isset(self::ROUTES['GET ' . $path]) || isset(self::ROUTES['POST ' . $path]);
    }
}
