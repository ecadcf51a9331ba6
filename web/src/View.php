<?php
declare(strict_types=1);

namespace Ems\Web;

/** Templates (web/templates/*.php) rendered inside the layout; every value goes through e(). */
final class View
{
    private const DIR = __DIR__ . '/../templates/';

    /** Send a full page: $template's body inside layout.php, with $vars and the common ones. */
    public static function page(string $template, array $vars, int $status = 200): void
    {
        http_response_code($status);
        $vars['body'] = self::fragment($template, $vars);
        echo self::fragment('layout', $vars);
    }

    public static function fragment(string $template, array $vars): string
    {
        extract($vars, EXTR_SKIP);
        ob_start();
        require self::DIR . $template . '.php';
        return (string) ob_get_clean();
    }

    /** Send a JSON answer (the Servers tab's calls from the page). */
    public static function json(array $data, int $status = 200): void
    {
        http_response_code($status);
        header('Content-Type: application/json; charset=utf-8');
        echo json_encode($data, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_HEX_TAG | JSON_HEX_AMP);
    }

    /** The current URL's query with some parameters replaced (for sort, paging links). */
    public static function query(array $current, array $changes): string
    {
        return '?' . http_build_query(array_merge($current, $changes));
    }
}
