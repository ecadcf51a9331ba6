<?php
declare(strict_types=1);

namespace Ems\Web;

use PDOStatement;

/**
 * What every list tab reads from its request the same way: a text parameter (never an array), the page,
 * the page size, the sort direction and a sort key from an allowlist; and the paged statement's binding.
 * Anything not allowed falls back to the default.
 */
final class ListParams
{
    public const PAGE_SIZES = [25, 50, 100, 200];
    public const DEFAULT_PER_PAGE = 50;
    public const MAX_PAGE = 1000000;

    /**
     * The text filter as SQL: "(col1 LIKE :q0 OR col2 LIKE :q1 ...)" over $columns (SQL expressions from the
     * page's own allowlist, never from the request), with the filter, its % and _ taken literally, put in $binds.
     */
    public static function anyLike(string $q, array $columns, array &$binds): string
    {
        $like = '%' . addcslashes($q, '%_\\') . '%';
        $any = [];
        foreach (array_values($columns) as $i => $column) {
            $any[] = "$column LIKE :q$i";
            $binds[":q$i"] = $like;
        }
        return '(' . implode(' OR ', $any) . ')';
    }

    /** A request parameter as text, at most $max characters; '' when missing or not a string. */
    public static function text(array $params, string $name, int $max = 200): string
    {
        $value = $params[$name] ?? null;
        return is_string($value) ? (string) iconv_substr($value, 0, $max) : '';
    }

    /** The text filter: trimmed, then at most $max characters. */
    public static function filter(array $params, string $name = 'q', int $max = 200): string
    {
        $value = $params[$name] ?? null;
        return is_string($value) ? (string) iconv_substr(trim($value), 0, $max) : '';
    }

    public static function page(array $params): int
    {
        return max(1, min(self::MAX_PAGE, (int) self::text($params, 'page')));
    }

    public static function perPage(array $params): int
    {
        $per = (int) self::text($params, 'per');
        return in_array($per, self::PAGE_SIZES, true) ? $per : self::DEFAULT_PER_PAGE;
    }

    /** 'asc' or 'desc': the one asked for, else $default. */
    public static function dir(array $params, string $default): string
    {
        $dir = self::text($params, 'dir');
        return in_array($dir, ['asc', 'desc'], true) ? $dir : $default;
    }

    /** The sort key asked for when it is one of $allowed (a list of keys), else $default. */
    public static function sort(array $params, array $allowed, string $default): string
    {
        $sort = self::text($params, 'sort');
        return in_array($sort, $allowed, true) ? $sort : $default;
    }

    /** How many pages $total rows fill (at least one). */
    public static function pages(int $total, int $perPage): int
    {
        return max(1, (int) ceil($total / $perPage));
    }

    /** Bind the filter's named values and the page's :limit and :offset, then run the statement. */
    public static function run(PDOStatement $select, array $binds, int $limit, int $offset): PDOStatement
    {
        foreach ($binds as $name => $value) {
            $select->bindValue($name, $value);
        }
        $select->bindValue(':limit', $limit, \PDO::PARAM_INT);
        $select->bindValue(':offset', $offset, \PDO::PARAM_INT);
        $select->execute();
        return $select;
    }
}
