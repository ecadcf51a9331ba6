<?php
// Autoloading of Ems\Web\* from this directory, and e(): the one escaping helper every template uses.
declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Ems\\Web\\';
    if (str_starts_with($class, $prefix)) {
        $file = __DIR__ . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

/** HTML-escape any value for text and quoted attributes (null -> ''). */
function e(mixed $value): string
{
    return htmlspecialchars((string) ($value ?? ''), ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
}
