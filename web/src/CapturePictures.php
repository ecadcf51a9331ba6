<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * The Captures tab's pictures: previews of a page's captures and one capture at full size. They stay in the
 * live server's store; the capture bridge (bridges/get_capture.py) reads them there for the web user with the
 * reason they gave once for the page, and the store audits every look with that person, the bridge and the reason.
 */
final class CapturePictures
{
    /** previews one request asks for (a page of the Captures tab; the bridge's own limit is higher) */
    public const MAX_PREVIEWS = 200;

    public function __construct(private readonly PDO $db, private readonly Auth $auth, private readonly ?Config $config = null)
    {
    }

    /** POST /captures/previews (server, ids: capture ids separated by commas, reason): JSON {previews: {id: data URL}, missing: {id: why}}. */
    public function previews(): void
    {
        $ids = array_values(array_unique(array_filter(explode(',', AuthPages::posted('ids')),
            static fn (string $id): bool => (bool) preg_match('/^[1-9][0-9]{0,17}$/', $id))));
        if (!$ids || count($ids) > self::MAX_PREVIEWS) {
            View::json(['error' => 'Name 1-' . self::MAX_PREVIEWS . ' captures by their ids.'], 400);
            return;
        }
        $ready = $this->ready();
        if ($ready === null) {
            return;
        }
        [$bridge, $server, $reason] = $ready;
        $known = $this->known($server, $ids);
        if (!$known) {
            View::json(['previews' => (object) [], 'missing' => (object) []]);
            return;
        }
        [$code, $out, $detail] = $bridge->run('capture', ['--preview'], $known, (array) $this->auth->user(), $reason);
        $answer = $code === 0 ? json_decode($out, true) : null;
        if (!is_array($answer) || !is_array($answer['previews'] ?? null)) {
            error_log('ems web: capture bridge (previews) exited ' . $code . ': ' . $detail);
            Bridge::refuse($code === 0 ? 1 : $code, $detail);
            return;
        }
        $previews = [];
        foreach ($answer['previews'] as $id => $jpeg) {
            $previews[(string) $id] = 'data:image/jpeg;base64,' . preg_replace('/[^A-Za-z0-9+\/=]/', '', (string) $jpeg);
        }
        View::json(['previews' => (object) $previews, 'missing' => (object) ($answer['missing'] ?? [])]);
    }

    /** POST /captures/image (server, id, reason): the capture at full size as a JPEG, or JSON {error, detail}. */
    public function image(): void
    {
        $id = AuthPages::posted('id');
        if (!preg_match('/^[1-9][0-9]{0,17}$/', $id)) {
            View::json(['error' => 'Name a capture by its id.'], 400);
            return;
        }
        $ready = $this->ready();
        if ($ready === null) {
            return;
        }
        [$bridge, $server, $reason] = $ready;
        if (!$this->known($server, [$id])) {
            View::json(['error' => 'No such capture.'], 404);
            return;
        }
        [$code, $jpeg, $detail] = $bridge->run('capture', [], [$id], (array) $this->auth->user(), $reason);
        if ($code === 0 && Bridge::isJpeg($jpeg)) {
            Bridge::sendJpeg($jpeg);
            return;
        }
        error_log('ems web: capture bridge for capture ' . $id . ' exited ' . $code . ': ' . $detail);
        Bridge::refuse($code === 0 ? 1 : $code, $detail);
    }

    /** [bridge, server, reason] when the posted reason is good and the server is the live one; else null, answered. */
    private function ready(): ?array
    {
        $max = Bridge::maxReason($this->config);
        $reason = Bridge::reason(AuthPages::posted('reason'), $max);
        if ($reason === null) {
            View::json(['error' => 'Say why you look at these pictures (1-' . $max . ' characters): the audit trail keeps it with your name.'], 422);
            return null;
        }
        $server = AuthPages::posted('server');
        $why = Bridge::whyNot($this->config, $server);
        $bridge = Bridge::fromConfig($this->config);
        if ($why !== null || $bridge === null) {
            View::json(['error' => $why ?? Bridge::NOT_SET_UP], 409);
            return null;
        }
        return [$bridge, $server, $reason];
    }

    /** Those of $ids that the snapshot has as captures of $server (the bridge is asked for nothing else). */
    private function known(string $server, array $ids): array
    {
        $names = [];
        $binds = [':server' => $server];
        foreach (array_values($ids) as $i => $id) {
            $names[] = ':id' . $i;
            $binds[':id' . $i] = (int) $id;
        }
        $select = $this->db->prepare('SELECT id FROM snapshot_captures WHERE server_id = :server AND id IN ('
            . implode(', ', $names) . ') ORDER BY id DESC');
        foreach ($binds as $name => $value) {
            $select->bindValue($name, $value, is_int($value) ? PDO::PARAM_INT : PDO::PARAM_STR);
        }
        $select->execute();
        return array_map('strval', $select->fetchAll(PDO::FETCH_COLUMN));
    }
}
