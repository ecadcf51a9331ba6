<?php
// The one front controller (document root: web/public). Everything else lives outside the docroot.
declare(strict_types=1);

if (PHP_SAPI === 'cli-server') {
    // php -S: let the built-in server send the static files under the docroot (assets, vendor).
    $path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
    if ($path !== '/' && is_file(__DIR__ . $path) && !str_ends_with($path, '.php')) {
        return false;
    }
}

require __DIR__ . '/../src/bootstrap.php';

(new Ems\Web\App())->handle();
