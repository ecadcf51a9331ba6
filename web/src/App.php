<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** One request: headers, configuration, session, CSRF (every POST), the route's role, the page. */
final class App
{
    public const THEMES = ['dark', 'light'];
    public const THEME_COOKIE = 'ems_theme';

    public function handle(): void
    {
        $this->securityHeaders();
        try {
            $config = Config::fromEnv();
            $db = Db::connect($config);
            Session::start($config);
            $this->dispatch($db, $config);
        } catch (\Throwable $exc) {
            error_log('ems web: ' . get_class($exc) . ': ' . $exc->getMessage());
            self::fail(500, 'The web view could not answer (see the server log).');
        }
    }

    private function dispatch(PDO $db, Config $config): void
    {
        $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
        $path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
        $route = Router::resolve($method, $path);
        if ($route === null) {
            self::fail(Router::knownPath($path) ? 405 : 404, Router::knownPath($path) ? 'Method not allowed.' : 'No such page.');
            return;
        }
        if ($method === 'POST' && !Session::csrfValid()) {
            self::fail(403, 'The form expired or did not come from this site (CSRF token missing or wrong). Reload and try again.');
            return;
        }
        [$class, $action, $role] = $route;
        $auth = new Auth($db, $config);
        if ($role !== null) {
            $user = $auth->user();
            if ($user === null) {
                $method === 'GET' ? self::redirect('/login') : self::fail(403, 'Log in first.');
                return;
            }
            if (!Auth::allows($user, $role)) {
                self::fail(403, 'Your web role (' . $user['role'] . ') may not do this; it needs ' . $role . '.', $user);
                return;
            }
        }
        (new $class($db, $auth, $config))->$action();
    }

    private function securityHeaders(): void
    {
        header("Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            . "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
        header('X-Frame-Options: DENY');
        header('X-Content-Type-Options: nosniff');
        header('Referrer-Policy: same-origin');
        header('Cache-Control: no-store');
    }

    public static function theme(): string
    {
        $theme = $_COOKIE[self::THEME_COOKIE] ?? 'dark';
        return in_array($theme, self::THEMES, true) ? $theme : 'dark';
    }

    public static function redirect(string $to): void
    {
        header('Location: ' . $to, true, 303);
    }

    public static function fail(int $status, string $message, ?array $user = null): void
    {
        View::page('error', ['title' => 'Error ' . $status, 'message' => $message, 'user' => $user, 'tab' => ''], $status);
    }
}
