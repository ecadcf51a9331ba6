<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * Charts drawn on the server as inline SVG: no script, no style attribute (the CSP allows neither), colours
 * from classes in app.css that follow the theme. Each chart is an image with a title and a description
 * (role="img", aria-labelledby); each bar carries its number as text beside it, in a <title> shown on hover
 * and in data-value (what the tests read). Every label goes through e().
 */
final class Svg
{
    private const WIDTH = 520;
    private const LABEL_W = 170;
    private const VALUE_W = 70;
    private const ROW_H = 22;
    private const BAR_H = 14;

    /**
     * Horizontal bars, one row per item: $rows = [[label, [value per series...]], ...]; several series stack.
     * $series = [[name, css class], ...]; $format turns a value into the text shown.
     */
    public static function bars(string $id, string $title, string $desc, array $rows, array $series, ?callable $format = null): string
    {
        $format ??= static fn (float $v): string => number_format($v);
        $legend = count($series) > 1 ? self::ROW_H : 0;
        $height = max(1, count($rows)) * self::ROW_H + 8 + $legend;
        $max = 0.0;
        foreach ($rows as [, $values]) {
            $max = max($max, array_sum(array_map('floatval', $values)));
        }
        $scale = $max > 0 ? (self::WIDTH - self::LABEL_W - self::VALUE_W) / $max : 0.0;
        $out = [self::open($id, $title, $desc, self::WIDTH, $height)];
        foreach ($rows as $i => [$label, $values]) {
            $y = 4 + $i * self::ROW_H;
            $x = (float) self::LABEL_W;
            $out[] = '<g class="ems-chart-row" data-label="' . e($label) . '">';
            $out[] = '<text class="ems-chart-label" x="' . (self::LABEL_W - 6) . '" y="' . ($y + 12) . '" text-anchor="end">'
                . e(self::clip((string) $label)) . '</text>';
                foreach ($values as $s => $value) {
                [$name, $class] = $series[$s];
                $w = round((float) $value * $scale, 2);
                $out[] = '<rect class="ems-bar ' . e($class) . '" x="' . round($x, 2) . '" y="' . $y . '" width="' . $w
                    . '" height="' . self::BAR_H . '" data-series="' . e($name) . '" data-value="' . e($value) . '"><title>'
                    . e($label . ': ' . $name . ' ' . $format((float) $value)) . '</title></rect>';
                $x += $w;
            }
            $text = implode(' / ', array_map(static fn ($v): string => $format((float) $v), $values));
            $out[] = '<text class="ems-chart-value" x="' . round($x + 4, 2) . '" y="' . ($y + 12) . '">' . e($text) . '</text></g>';
        }
        if (!$rows) {
            $out[] = '<text class="ems-chart-label" x="8" y="16">no clients</text>';
        }
        if ($legend) {  // which colour is which series, and the order of the numbers after each bar
            $y = $height - 10;
            foreach ($series as $s => [$name, $class]) {
                $x = self::LABEL_W + $s * 110;
                $out[] = '<rect class="ems-bar ' . e($class) . '" x="' . $x . '" y="' . ($y - 9) . '" width="10" height="10"></rect>'
                    . '<text class="ems-chart-label" x="' . ($x + 14) . '" y="' . $y . '">' . e($name) . '</text>';
            }
        }
        $out[] = '</svg>';
        return implode("\n", $out);
    }

    /** Vertical columns, one per bucket: $buckets = [[label, count], ...]. */
    public static function histogram(string $id, string $title, string $desc, array $buckets, string $class): string
    {
        $width = self::WIDTH;
        $plotH = 120;
        $height = $plotH + 40;
        $max = max(1, ...array_map(static fn (array $b): int => (int) $b[1], $buckets ?: [[0, 0]]));
        $colW = ($width - 20) / max(1, count($buckets));
        $out = [self::open($id, $title, $desc, $width, $height)];
        foreach ($buckets as $i => [$label, $count]) {
            $h = round($count / $max * $plotH, 2);
            $x = round(10 + $i * $colW, 2);
            $y = 16 + $plotH - $h;
            $out[] = '<g class="ems-chart-row" data-label="' . e($label) . '">';
            $out[] = '<rect class="ems-bar ' . e($class) . '" x="' . ($x + 2) . '" y="' . $y . '" width="' . round($colW - 4, 2)
                . '" height="' . $h . '" data-value="' . e($count) . '"><title>' . e($label . ': ' . number_format($count)
                . ' clients') . '</title></rect>';
            $out[] = '<text class="ems-chart-value" x="' . round($x + $colW / 2, 2) . '" y="' . ($y - 3) . '" text-anchor="middle">'
                . e(number_format($count)) . '</text>';
            $out[] = '<text class="ems-chart-label" x="' . round($x + $colW / 2, 2) . '" y="' . ($plotH + 32) . '" text-anchor="middle">'
                . e($label) . '</text></g>';
        }
        $out[] = '</svg>';
        return implode("\n", $out);
    }

    private static function open(string $id, string $title, string $desc, int $width, int $height): string
    {
        return '<svg xmlns="http://www.w3.org/2000/svg" class="ems-chart" id="' . e($id) . '" role="img" viewBox="0 0 '
            . $width . ' ' . $height . '" aria-labelledby="' . e($id) . '-title ' . e($id) . '-desc">'
            . '<title id="' . e($id) . '-title">' . e($title) . '</title><desc id="' . e($id) . '-desc">' . e($desc) . '</desc>';
    }

    /** A label short enough for the label column (the full text is in the row's <title>). */
    private static function clip(string $label): string
    {
        return iconv_strlen($label) > 24 ? iconv_substr($label, 0, 23) . '…' : $label;
    }
}
