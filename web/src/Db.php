<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** The one PDO connection: exceptions on error, real prepared statements, named placeholders only. */
final class Db
{
    public static function connect(Config $config): PDO
    {
        $m = $config->mysql();
        $dsn = !empty($m['unix_socket'])
            ? sprintf('mysql:unix_socket=%s;dbname=%s;charset=utf8mb4', $m['unix_socket'], $m['database'])
            : sprintf('mysql:host=%s;port=%d;dbname=%s;charset=utf8mb4', $m['host'] ?? '127.0.0.1', (int) ($m['port'] ?? 3306), $m['database']);
        return new PDO($dsn, (string) $m['user'], (string) $m['password'], [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::ATTR_EMULATE_PREPARES => false,
            PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
        ]);
    }
}
