//! The REST contract, with the same assertions on every database.

use faafo_common::api_client::ListQuery;
use faafo_common::fractal::{Fractal, FractalPage, FractalStatus, FractalUpdate, NewFractal};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, new_fractal, render, spawn_app, spawn_app_with};

/// Generates one test per database for each contract function.
macro_rules! on_every_database {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::helpers::Backend::Sqlite).await })*
        }
        mod mariadb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::helpers::Backend::MySql).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::helpers::Backend::Postgres).await })*
        }
    };
}

on_every_database!(
    create_and_read_back_every_field_exactly,
    a_negative_zero_comes_back_as_zero_everywhere,
    uuid_is_generated_and_location_given,
    duplicates_are_refused_and_change_nothing,
    pages_count_and_clamp,
    filters_and_orders,
    the_producers_lifecycle,
    the_producers_two_requests,
    done_needs_the_matching_image,
    images_are_served_with_etags,
    delete_removes_the_fractal_and_its_image,
    large_images_fit,
    concurrent_writers_do_not_lose_updates,
    conditional_updates_apply_only_at_their_revision,
    a_change_naming_its_creation_applies_only_to_that_fractal,
    concurrent_first_images_of_many_fractals,
    filesystem_image_store,
    health_readiness_and_metrics,
    the_api_client_works_against_the_server,
);

async fn create(app: &TestApp, body: &NewFractal) -> Fractal {
    app.api.create(body).await.expect("create")
}

/// SQLite cannot keep a zero's sign (a whole REAL is stored as an
/// integer); PostgreSQL can. The API stores `+0.0` for `-0.0`, so each
/// database answers what the creation answered.
async fn a_negative_zero_comes_back_as_zero_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({
        "width": 8, "height": 8, "iterations": 16,
        "xa": -0.0, "xb": 1.0, "ya": -1.0, "yb": 0.0,
        "c_re": -0.0, "c_im": -0.0,
    });
    let response = app.post_json("/v1/fractal", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Fractal = response.json().await.expect("json");
    let got = app.api.get(&created.uuid).await.expect("get");
    assert_eq!(got, created);
    for (name, value) in [
        ("xa", created.xa),
        ("c_re", created.c_re.unwrap_or(f64::NAN)),
        ("xa read back", got.xa),
        ("c_re read back", got.c_re.unwrap_or(f64::NAN)),
        ("c_im read back", got.c_im.unwrap_or(f64::NAN)),
    ] {
        assert!(
            value == 0.0 && value.is_sign_positive(),
            "{name}: {value:?} (created: {created:?})"
        );
    }
    app.stop().await;
}

async fn create_and_read_back_every_field_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    // The original's task, whose floats a MySQL FLOAT column rounded.
    let body = json!({
        "uuid": "212E8C23-E67F-4BD3-86E1-5A5E811EE2F4",
        "width": 510, "height": 278, "iterations": 281,
        "xa": -3.3528957195683087, "xb": 1.1428457603077387,
        "ya": -2.1341119130263717, "yb": 2.478654026560605,
        "seed": 18446744073709551615u64,
    });
    let response = app.post_json("/v1/fractal", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Fractal = response.json().await.expect("json");
    assert_eq!(created.uuid, "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4");
    let got = app.api.get(&created.uuid).await.expect("get");
    assert_eq!(got, created);
    assert_eq!((got.width, got.height, got.iterations), (510, 278, 281));
    assert_eq!(got.xa, -3.3528957195683087);
    assert_eq!(got.xb, 1.1428457603077387);
    assert_eq!(got.ya, -2.1341119130263717);
    assert_eq!(got.yb, 2.478654026560605);
    assert_eq!(got.seed, Some(u64::MAX));
    assert_eq!((got.c_re, got.c_im), (None, None));
    assert_eq!(got.status, FractalStatus::Pending);
    assert_eq!(
        (got.attempts, got.duration, got.checksum.clone(), got.size),
        (0, None, None, None)
    );
    assert_eq!(got.created_at, got.updated_at);
    assert!(
        got.created_at.ends_with('Z') && got.created_at.len() == 27,
        "{}",
        got.created_at
    );
    // Every result field, and text that must come back byte for byte.
    let update = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some(
            "render failed: ünïcödé, 'quotes', \"double\", \\ and ; DROP TABLE fractal; --".into(),
        ),
        attempts: Some(3),
        duration: Some(0.872526),
        checksum: Some("B22D97".repeat(10) + "abcd"),
        size: Some(123_456),
        generated_by: Some("worker-1.example.org".into()),
        c_re: Some(-0.8),
        c_im: Some(0.156),
        ..FractalUpdate::default()
    };
    let updated = app.api.update(&got.uuid, &update).await.expect("update");
    let again = app.api.get(&got.uuid).await.expect("get");
    assert_eq!(again, updated);
    assert_eq!(again.error, update.error);
    assert_eq!(
        again.checksum.as_deref(),
        Some(("b22d97".repeat(10) + "abcd").as_str())
    );
    assert_eq!(
        (again.attempts, again.duration, again.size),
        (3, Some(0.872526), Some(123_456))
    );
    assert_eq!(again.generated_by.as_deref(), Some("worker-1.example.org"));
    assert_eq!((again.c_re, again.c_im), (Some(-0.8), Some(0.156)));
    assert!(again.updated_at > again.created_at);
    app.stop().await;
}

async fn uuid_is_generated_and_location_given(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_value(new_fractal(64, 48, None)).expect("json");
    let response = app.post_json("/v1/fractal", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION]
        .to_str()
        .expect("text")
        .to_string();
    let created: Fractal = response.json().await.expect("json");
    assert!(uuid::Uuid::parse_str(&created.uuid).is_ok());
    assert_eq!(location, format!("/v1/fractal/{}", created.uuid));
    let fetched: Fractal = app.get(&location).await.json().await.expect("json");
    assert_eq!(fetched, created);
    let seeded = create(
        &app,
        &NewFractal {
            seed: Some(42),
            ..new_fractal(8, 8, None)
        },
    )
    .await;
    assert_eq!((seeded.seed, seeded.c_re), (Some(42), None));
    app.stop().await;
}

async fn duplicates_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = create(&app, &new_fractal(64, 48, None)).await;
    let before = app.snapshot().await;
    let twin = NewFractal {
        uuid: Some(first.uuid.to_uppercase()),
        width: 999,
        ..new_fractal(64, 48, None)
    };
    let response = app
        .post_json("/v1/fractal", &serde_json::to_value(&twin).expect("json"))
        .await;
    let message = error_of(response, 409).await;
    assert!(message.contains(&first.uuid), "{message}");
    assert_eq!(app.snapshot().await, before);
    app.stop().await;
}

async fn pages_count_and_clamp(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.api.max_results_per_page = 20).await;
    let mut uuids = Vec::new();
    for _ in 0..23 {
        uuids.push(create(&app, &new_fractal(8, 8, None)).await.uuid);
    }
    let page: FractalPage = app.get("/v1/fractal").await.json().await.expect("json");
    assert_eq!(
        (
            page.num_results,
            page.page,
            page.total_pages,
            page.objects.len()
        ),
        (23, 1, 3, 10)
    );
    let created: Vec<String> = page.objects.iter().map(|f| f.uuid.clone()).collect();
    assert_eq!(created, uuids[..10], "oldest first by default");
    let page: FractalPage = app
        .get("/v1/fractal?page=3")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!((page.page, page.objects.len()), (3, 3));
    let page: FractalPage = app
        .get("/v1/fractal?page=4")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (
            page.num_results,
            page.page,
            page.total_pages,
            page.objects.len()
        ),
        (23, 4, 3, 0)
    );
    let page: FractalPage = app
        .get("/v1/fractal?page=9223372036854775807")
        .await
        .json()
        .await
        .expect("json");
    assert!(page.objects.is_empty());
    error_of(app.get("/v1/fractal?page=9223372036854775808").await, 400).await;
    let page: FractalPage = app
        .get("/v1/fractal?results_per_page=1000")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (page.objects.len(), page.total_pages),
        (20, 2),
        "clamped to max_results_per_page"
    );
    let page: FractalPage = app
        .get("/v1/fractal?results_per_page=7&page=2")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        page.objects
            .iter()
            .map(|f| f.uuid.clone())
            .collect::<Vec<_>>(),
        uuids[7..14]
    );
    let all = app
        .api
        .list_all(&ListQuery::default())
        .await
        .expect("list_all");
    assert_eq!(all.len(), 23);
    // Pages larger than the API serves (max_results_per_page 20) and
    // smaller: every fractal once, in the order asked for.
    for per_page in [7, 1000] {
        let all = app
            .api
            .list_all(&ListQuery {
                results_per_page: Some(per_page),
                ..ListQuery::default()
            })
            .await
            .expect("list_all");
        let seen: Vec<String> = all.into_iter().map(|f| f.uuid).collect();
        assert_eq!(seen, uuids, "{per_page} a page: by creation");
        let newest_first = app
            .api
            .list_all(&ListQuery {
                results_per_page: Some(per_page),
                order_by: Some("-created_at".into()),
                ..ListQuery::default()
            })
            .await
            .expect("list_all");
        let mut reversed = uuids.clone();
        reversed.reverse();
        let seen: Vec<String> = newest_first.into_iter().map(|f| f.uuid).collect();
        assert_eq!(seen, reversed, "{per_page} a page: newest first");
    }

    // Pages by uuid do not shift while fractals leave a filtered list
    // between two of them; numbered pages do, and skip some.
    let by_uuid = |after: Option<String>| ListQuery {
        results_per_page: Some(10),
        status: Some(FractalStatus::Pending),
        order_by: Some("uuid".into()),
        uuid_after: after,
        ..ListQuery::default()
    };
    let first = app.api.list(&by_uuid(None)).await.expect("page 1");
    let mut sorted = uuids.clone();
    sorted.sort();
    let first: Vec<String> = first.objects.into_iter().map(|f| f.uuid).collect();
    assert_eq!(first, sorted[..10]);
    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        ..FractalUpdate::default()
    };
    for uuid in &first[..5] {
        app.api.update(uuid, &running).await.expect("running");
    }
    let second = app
        .api
        .list(&by_uuid(first.last().cloned()))
        .await
        .expect("page 2");
    assert_eq!(second.num_results, 13, "what is left after page 1");
    let second: Vec<String> = second.objects.into_iter().map(|f| f.uuid).collect();
    assert_eq!(second, sorted[10..20], "nothing skipped");
    let numbered = app
        .api
        .list(&ListQuery {
            page: Some(2),
            ..by_uuid(None)
        })
        .await
        .expect("numbered page 2");
    assert_eq!(numbered.objects[0].uuid, sorted[15], "numbered pages shift");
    let pending = app
        .api
        .list_all(&ListQuery {
            status: Some(FractalStatus::Pending),
            results_per_page: Some(4),
            ..ListQuery::default()
        })
        .await
        .expect("list_all");
    assert_eq!(pending.len(), 18);
    error_of(app.get("/v1/fractal?uuid_after=nope").await, 400).await;
    app.stop().await;
}

async fn filters_and_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = create(&app, &new_fractal(8, 8, None)).await;
    let b = create(&app, &new_fractal(8, 8, None)).await;
    let c = create(&app, &new_fractal(8, 8, None)).await;
    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        ..FractalUpdate::default()
    };
    let b = app.api.update(&b.uuid, &running).await.expect("update");
    let list = |query: ListQuery| {
        let api = app.api.clone();
        async move {
            api.list(&query)
                .await
                .expect("list")
                .objects
                .into_iter()
                .map(|f| f.uuid)
                .collect::<Vec<_>>()
        }
    };
    let q = |order: &str| ListQuery {
        order_by: Some(order.into()),
        ..ListQuery::default()
    };
    assert_eq!(
        list(q("created_at")).await,
        [a.uuid.as_str(), b.uuid.as_str(), c.uuid.as_str()]
    );
    assert_eq!(
        list(q("-created_at")).await,
        [c.uuid.as_str(), b.uuid.as_str(), a.uuid.as_str()]
    );
    assert_eq!(list(q("-updated_at")).await[0], b.uuid);
    let mut sorted = vec![a.uuid.clone(), b.uuid.clone(), c.uuid.clone()];
    sorted.sort();
    assert_eq!(list(q("uuid")).await, sorted);
    sorted.reverse();
    assert_eq!(list(q("-uuid")).await, sorted);
    let status = |s| ListQuery {
        status: Some(s),
        ..ListQuery::default()
    };
    assert_eq!(
        list(status(FractalStatus::Running)).await,
        [b.uuid.as_str()]
    );
    assert_eq!(
        list(status(FractalStatus::Pending)).await,
        [a.uuid.as_str(), c.uuid.as_str()]
    );
    assert!(list(status(FractalStatus::Done)).await.is_empty());
    let before = |t: &str| ListQuery {
        updated_before: Some(t.into()),
        ..ListQuery::default()
    };
    assert_eq!(
        list(before(&b.updated_at)).await,
        [a.uuid.as_str(), c.uuid.as_str()]
    );
    assert!(list(before(&a.updated_at)).await.is_empty());
    assert_eq!(list(before("2999-01-01T00:00:00+02:00")).await.len(), 3);
    let both = ListQuery {
        status: Some(FractalStatus::Pending),
        updated_before: Some(c.updated_at.clone()),
        ..ListQuery::default()
    };
    assert_eq!(list(both).await, [a.uuid.as_str()]);
    app.stop().await;
}

async fn the_producers_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let (done, png) = app.finished_fractal(96, 64, (-0.8, 0.156)).await;
    assert_eq!(done.status, FractalStatus::Done);
    assert_eq!(done.size, Some(png.len() as u64));
    assert_eq!(done.generated_by.as_deref(), Some("test-worker"));
    assert_eq!(done.attempts, 1);
    assert!(done.duration.is_some_and(|d| d >= 0.0));
    assert_eq!(app.api.image(&done.uuid).await.expect("image"), png);
    // The result delivered twice: accepted, nothing changes.
    let rendered = render(&done);
    let again = app
        .api
        .update(&done.uuid, &rendered.done())
        .await
        .expect("repeat");
    assert_eq!(again, done);
    app.api
        .upload_image(&done.uuid, png.clone())
        .await
        .expect("same image again");
    assert_eq!(app.api.get(&done.uuid).await.expect("get"), done);
    // A different result, or going back: 409, and nothing changes.
    let other = FractalUpdate {
        checksum: Some("0".repeat(64)),
        ..rendered.done()
    };
    let err = app
        .api
        .update(&done.uuid, &other)
        .await
        .expect_err("conflict");
    assert_eq!(err.status(), Some(409), "{err}");
    let back = FractalUpdate {
        status: Some(FractalStatus::Running),
        ..FractalUpdate::default()
    };
    let err = app.api.update(&done.uuid, &back).await.expect_err("final");
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("final"), "{err}");
    assert_eq!(app.api.get(&done.uuid).await.expect("get"), done);
    app.stop().await;
}

/// What the producer sends now: the task created already running, then
/// the image with its result in one `PUT`.
async fn the_producers_two_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    // A generated uuid is a UUIDv7: ids made later sort later.
    let first = create(&app, &new_fractal(64, 48, None)).await;
    let body = NewFractal {
        status: Some(FractalStatus::Running),
        attempts: Some(1),
        ..new_fractal(64, 48, Some((-0.8, 0.156)))
    };
    let f = create(&app, &body).await;
    for id in [&first.uuid, &f.uuid] {
        let version = uuid::Uuid::parse_str(id).expect("uuid").get_version_num();
        assert_eq!(version, 7, "{id}");
    }
    assert!(f.uuid > first.uuid, "{} then {}", first.uuid, f.uuid);
    assert_eq!((f.status, f.attempts), (FractalStatus::Running, 1));
    // A new fractal cannot start done or failed.
    let before = app.snapshot().await;
    for status in ["done", "failed"] {
        let mut bad = serde_json::to_value(new_fractal(64, 48, None)).expect("json");
        bad["status"] = json!(status);
        let message = error_of(app.post_json("/v1/fractal", &bad).await, 422).await;
        assert!(message.contains("pending or running"), "{message}");
    }
    assert_eq!(app.snapshot().await, before);
    let rendered = render(&f);
    let path = format!("/v1/fractal/{}/image", f.uuid);
    let put_png = |query: &str| {
        app.http
            .put(format!("{}?{query}", app.at(&path)))
            .header(CONTENT_TYPE, "image/png")
            .body(rendered.png.clone())
            .send()
    };
    // A query string that is not an update, or an update that contradicts
    // the image, changes nothing.
    for (query, status) in [
        ("status=finished", 400),
        ("colour=red", 400),
        ("duration=soon", 400),
        ("duration=-1", 422),
        ("status=done&error=oops", 422),
    ] {
        let response = put_png(query).await.expect("request");
        error_of(response, status).await;
    }
    let wrong = FractalUpdate {
        checksum: Some("a".repeat(64)),
        ..rendered.done()
    };
    let err = app
        .api
        .store_result(&f.uuid, rendered.png.clone(), &wrong)
        .await
        .expect_err("checksum mismatch");
    assert_eq!(err.status(), Some(409), "{err}");
    assert_eq!(app.snapshot().await, before);
    error_of(app.get(&format!("/fractal/{}", f.uuid)).await, 409).await;
    // The image and the result in one request.
    app.api
        .store_result(&f.uuid, rendered.png.clone(), &rendered.done())
        .await
        .expect("stored");
    let done = app.api.get(&f.uuid).await.expect("get");
    assert_eq!(done.status, FractalStatus::Done);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.checksum.as_deref(), Some(rendered.checksum.as_str()));
    assert_eq!(done.size, Some(rendered.png.len() as u64));
    assert_eq!(done.duration, Some(rendered.duration));
    assert_eq!(done.generated_by.as_deref(), Some("test-worker"));
    assert_eq!(
        (done.c_re, done.c_im),
        (Some(rendered.c.0), Some(rendered.c.1))
    );
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), rendered.png);
    // The same result delivered again changes nothing.
    app.api
        .store_result(&f.uuid, rendered.png.clone(), &rendered.done())
        .await
        .expect("again");
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), done);
    assert_eq!(app.snapshot().await.len(), before.len());
    app.stop().await;
}

async fn done_needs_the_matching_image(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = create(&app, &new_fractal(64, 48, Some((-0.4, 0.6)))).await;
    let rendered = render(&f);
    let path = format!("/v1/fractal/{}", f.uuid);
    let message = error_of(
        app.put_json(
            &path,
            &json!({"status": "done", "checksum": rendered.checksum}),
        )
        .await,
        409,
    )
    .await;
    assert!(message.contains("has no image yet"), "{message}");
    // The worker reported a checksum; another image is refused.
    app.api
        .update(
            &f.uuid,
            &FractalUpdate {
                checksum: Some(rendered.checksum.clone()),
                ..FractalUpdate::default()
            },
        )
        .await
        .expect("checksum");
    let other = render(&Fractal {
        c_re: Some(0.3),
        ..f.clone()
    });
    let err = app
        .api
        .upload_image(&f.uuid, other.png)
        .await
        .expect_err("mismatch");
    assert_eq!(err.status(), Some(409), "{err}");
    // An image of another size is refused.
    let small = render(&Fractal {
        width: 32,
        ..f.clone()
    });
    let err = app
        .api
        .upload_image(&f.uuid, small.png)
        .await
        .expect_err("size");
    assert_eq!(err.status(), Some(422), "{err}");
    assert_eq!(
        app.api.get(&f.uuid).await.expect("get").status,
        FractalStatus::Pending
    );
    app.api
        .upload_image(&f.uuid, rendered.png.clone())
        .await
        .expect("upload");
    let message = error_of(
        app.put_json(
            &path,
            &json!({"status": "done", "checksum": "a".repeat(64)}),
        )
        .await,
        409,
    )
    .await;
    assert!(message.contains("does not match"), "{message}");
    let done = app
        .api
        .update(&f.uuid, &rendered.done())
        .await
        .expect("done");
    assert_eq!(done.status, FractalStatus::Done);
    assert_eq!(done.checksum.as_deref(), Some(rendered.checksum.as_str()));
    app.stop().await;
}

async fn images_are_served_with_etags(backend: Backend) {
    let app = spawn_app(backend).await;
    let (done, png) = app.finished_fractal(64, 48, (-0.7, 0.27)).await;
    let path = format!("/fractal/{}", done.uuid);
    let response = app.get(&path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "image/png");
    let checksum = done.checksum.clone().expect("checksum");
    let etag = format!("\"{checksum}\"");
    assert_eq!(response.headers()[ETAG].to_str().expect("text"), etag);
    // The plain URL: revalidated each time (the uuid may name another
    // image after a delete and a re-creation).
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    assert_eq!(response.bytes().await.expect("body").to_vec(), png);
    // The page's link, `?v=<checksum>`: cached for good; an old page's
    // link to another version: the current image, not kept.
    let linked = app.get(&format!("{path}?v={checksum}")).await;
    assert!(
        linked.headers()[CACHE_CONTROL]
            .to_str()
            .expect("text")
            .contains("immutable")
    );
    let old = app.get(&format!("{path}?v={}", "0".repeat(64))).await;
    assert_eq!(old.status(), StatusCode::OK);
    assert_eq!(old.headers()[CACHE_CONTROL], "no-cache");
    assert_eq!(old.bytes().await.expect("body").to_vec(), png);
    let cached = app
        .http
        .get(app.at(&path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()[ETAG].to_str().expect("text"), etag);
    let stale = app
        .http
        .get(app.at(&path))
        .header(IF_NONE_MATCH, "\"other\"")
        .send()
        .await
        .expect("request");
    assert_eq!(stale.status(), StatusCode::OK);
    let head = app.http.head(app.at(&path)).send().await.expect("request");
    assert_eq!(head.status(), StatusCode::OK);
    // Unknown: 404; known but not done: a clear 409.
    let unknown = uuid::Uuid::new_v4();
    let message = error_of(app.get(&format!("/fractal/{unknown}")).await, 404).await;
    assert!(message.contains(&unknown.to_string()), "{message}");
    let pending = create(&app, &new_fractal(8, 8, None)).await;
    let message = error_of(app.get(&format!("/fractal/{}", pending.uuid)).await, 409).await;
    assert_eq!(
        message,
        format!("fractal {} is pending: it has no image yet", pending.uuid)
    );
    let failed = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some("boom".into()),
        ..FractalUpdate::default()
    };
    app.api
        .update(&pending.uuid, &failed)
        .await
        .expect("failed");
    let message = error_of(app.get(&format!("/fractal/{}", pending.uuid)).await, 409).await;
    assert_eq!(
        message,
        format!("fractal {} failed: it has no image (boom)", pending.uuid)
    );
    app.stop().await;
}

async fn delete_removes_the_fractal_and_its_image(backend: Backend) {
    let app = spawn_app(backend).await;
    let (done, _) = app.finished_fractal(32, 32, (-0.8, 0.156)).await;
    let keep = create(&app, &new_fractal(8, 8, None)).await;
    let response = app
        .http
        .delete(app.at(&format!("/v1/fractal/{}", done.uuid)))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.api.get(&done.uuid).await.expect_err("gone").status(),
        Some(404)
    );
    error_of(app.get(&format!("/fractal/{}", done.uuid)).await, 404).await;
    let again = app
        .http
        .delete(app.at(&format!("/v1/fractal/{}", done.uuid)))
        .send()
        .await
        .expect("request");
    error_of(again, 404).await;
    assert_eq!(app.snapshot().await, vec![keep]);
    // The uuid may be used again.
    let reborn = NewFractal {
        uuid: Some(done.uuid.clone()),
        ..new_fractal(8, 8, None)
    };
    assert_eq!(create(&app, &reborn).await.status, FractalStatus::Pending);
    app.stop().await;
}

/// A PNG's chunks for `width` x `height`, its IDAT `len` incompressible
/// bytes (not pixels: the API does not decode them).
fn synthetic_png(width: u32, height: u32, len: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 3, 0, 0, 0, 0, 0, 0, 0]);
    png.extend_from_slice(&(len as u32).to_be_bytes());
    png.extend_from_slice(b"IDAT");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    png.extend((0..len).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    png.extend_from_slice(&[0; 4]);
    png.extend_from_slice(&0u32.to_be_bytes());
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&[0; 4]);
    png
}

async fn large_images_fit(backend: Backend) {
    let app = spawn_app(backend).await;
    // A 16 Mpixel fractal whose PNG is 12 MiB: more than a BLOB or a
    // MEDIUMBLOB's 16 MiB would hold with room to spare for MariaDB's
    // default 16 MiB packets.
    let f = create(
        &app,
        &NewFractal {
            iterations: 16,
            ..new_fractal(4096, 4096, None)
        },
    )
    .await;
    let png = synthetic_png(4096, 4096, 12 << 20);
    let stored = app.api.upload_image(&f.uuid, png.clone()).await;
    stored.expect("a 12 MiB image is stored");
    app.api
        .update(
            &f.uuid,
            &FractalUpdate {
                status: Some(FractalStatus::Done),
                ..FractalUpdate::default()
            },
        )
        .await
        .expect("done");
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), png);
    app.stop().await;
}

async fn concurrent_writers_do_not_lose_updates(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = create(&app, &new_fractal(64, 48, Some((-0.8, 0.156)))).await;
    let rendered = render(&f);
    // Ten producers deliver the same result at once: one image, one done.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let api = app.api.clone();
        let uuid = f.uuid.clone();
        let png = rendered.png.clone();
        let done = rendered.done();
        tasks.push(tokio::spawn(async move {
            api.upload_image(&uuid, png).await?;
            api.update(&uuid, &done).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            task.await
                .expect("task")
                .expect("every delivery is accepted"),
        );
    }
    let stored = app.api.get(&f.uuid).await.expect("get");
    assert_eq!(stored.status, FractalStatus::Done);
    assert!(results.iter().all(|r| *r == stored));
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), rendered.png);
    app.stop().await;
}

/// `If-Match` on a revision: what keeps a request that hung on one API
/// host (while its client failed over to another and went on) from
/// undoing, when it finally runs, what came after it.
async fn conditional_updates_apply_only_at_their_revision(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = create(&app, &new_fractal(64, 48, Some((-0.8, 0.156)))).await;
    let path = format!("/v1/fractal/{}", f.uuid);
    let put = |body: Value, if_match: Option<String>| {
        let mut request = app.http.put(app.at(&path)).json(&body);
        if let Some(tag) = if_match {
            request = request.header(reqwest::header::IF_MATCH, tag);
        }
        request.send()
    };
    let tag = |f: &Fractal| format!("\"{}\"", f.revision.expect("the API gives revisions"));
    // GET's ETag is the revision of its body.
    let response = app.get(&path).await;
    let etag = response.headers()[ETAG].to_str().expect("etag").to_string();
    let read: Fractal = response.json().await.expect("json");
    assert_eq!(etag, tag(&read));
    assert_eq!(read, f);
    // The producer marks it running at the revision it read.
    let running = json!({"status": "running", "attempts": 1});
    let response = put(running.clone(), Some(tag(&f))).await.expect("put");
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[ETAG].to_str().expect("etag").to_string();
    let marked: Fractal = response.json().await.expect("json");
    assert_eq!(etag, tag(&marked));
    assert!(marked.revision > f.revision, "{marked:?}");
    // The same request again (its answer lost, or another producer's
    // alike): refused, as the change may not be this client's own.
    let message = error_of(put(running.clone(), Some(tag(&f))).await.expect("put"), 412).await;
    assert!(message.contains("changed since"), "{message}");
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), marked);
    // The task moves on: failed.
    let failed = app
        .api
        .update_at_revision(
            &f.uuid,
            &FractalUpdate {
                status: Some(FractalStatus::Failed),
                error: Some("no worker".into()),
                ..FractalUpdate::default()
            },
            marked.revision,
        )
        .await
        .expect("failed");
    // A late "running" of the old revision (and one of a revision never
    // seen, a weak tag of the current one, an empty list) is refused: 412,
    // nothing changes.
    let before = app.snapshot().await;
    for stale in [
        tag(&f),
        tag(&marked),
        "\"999999\"".into(),
        format!("W/{}", tag(&failed)),
        String::new(),
        " , ".into(),
        "\"1,2\"".into(),
    ] {
        let late = json!({"status": "running", "attempts": 2});
        let message = error_of(put(late, Some(stale.clone())).await.expect("put"), 412).await;
        assert!(message.contains("changed since"), "{stale}: {message}");
    }
    let err = app
        .api
        .update_at_revision(
            &f.uuid,
            &FractalUpdate {
                attempts: Some(5),
                ..FractalUpdate::default()
            },
            f.revision,
        )
        .await
        .expect_err("stale");
    assert!(err.is_stale(), "{err}");
    // A precondition comes before the rules of a fractal's life (done
    // without an image is a 409 without it), not before reading the body.
    let done = json!({"status": "done"});
    error_of(put(done.clone(), None).await.expect("put"), 409).await;
    error_of(put(done, Some(tag(&f))).await.expect("put"), 412).await;
    let message = error_of(
        put(json!({"checksum": "x"}), Some(tag(&f)))
            .await
            .expect("put"),
        422,
    )
    .await;
    assert!(message.contains("checksum"), "{message}");
    // A malformed If-Match is a 400.
    // (A space or a tab inside the quotes: no entity tag has one, and the
    // headers crate's parser asserted it in debug builds, a panic.)
    for bad in [
        "7",
        "\"7",
        "W/7",
        "\"1\" \"2\"",
        "\"1 2\"",
        "W/\"a\tb\"",
        "\" 7\"",
    ] {
        let message = error_of(
            put(json!({"attempts": 3}), Some(bad.into()))
                .await
                .expect("put"),
            400,
        )
        .await;
        assert!(message.contains("If-Match"), "{bad}: {message}");
    }
    assert_eq!(app.snapshot().await, before);
    // A list naming the current revision, and *, are admitted.
    let listed = format!("\"999999\", {}", tag(&failed));
    let response = put(json!({"status": "running", "attempts": 2}), Some(listed))
        .await
        .expect("put");
    assert_eq!(response.status(), StatusCode::OK);
    let again: Fractal = response.json().await.expect("json");
    assert_eq!((again.status, again.attempts), (FractalStatus::Running, 2));
    let response = put(json!({"attempts": 3}), Some("*".into()))
        .await
        .expect("put");
    assert_eq!(response.status(), StatusCode::OK);
    let current: Fractal = response.json().await.expect("json");
    // Producers racing at one revision to take the task over alike:
    // exactly one wins, the others get 412 (the compare and swap is on
    // the revision the precondition read).
    let mut racers = Vec::new();
    for _ in 0..8 {
        let api = app.api.clone();
        let (uuid, revision) = (f.uuid.clone(), current.revision);
        racers.push(tokio::spawn(async move {
            let update = FractalUpdate {
                status: Some(FractalStatus::Running),
                attempts: Some(10),
                ..FractalUpdate::default()
            };
            api.update_at_revision(&uuid, &update, revision).await
        }));
    }
    let mut won = Vec::new();
    for racer in racers {
        match racer.await.expect("task") {
            Ok(f) => won.push(f),
            Err(e) => assert!(e.is_stale(), "{e}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let stored = app.api.get(&f.uuid).await.expect("get");
    assert_eq!(stored, won[0]);
    // The image upload takes the same precondition.
    let rendered = render(&f);
    let upload = |if_match: String| {
        app.http
            .put(format!("{}/image?status=done", app.at(&path)))
            .header(CONTENT_TYPE, "image/png")
            .header(reqwest::header::IF_MATCH, if_match)
            .body(rendered.png.clone())
            .send()
    };
    error_of(upload(tag(&current)).await.expect("upload"), 412).await;
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), stored);
    error_of(app.get(&format!("/fractal/{}", f.uuid)).await, 409).await;
    let response = upload(tag(&stored)).await.expect("upload");
    assert_eq!(response.status(), StatusCode::OK);
    let done: Fractal = response.json().await.expect("json");
    assert_eq!(done.status, FractalStatus::Done);
    // Repeated at the old revision: already done, a success.
    let response = upload(tag(&stored)).await.expect("upload");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), rendered.png);
    // A delete takes the precondition too: at an old revision, 412 and
    // the fractal stays, image and all; at the current one, deleted.
    let delete = |if_match: String| {
        app.http
            .delete(app.at(&path))
            .header(reqwest::header::IF_MATCH, if_match)
            .send()
    };
    let message = error_of(delete(tag(&stored)).await.expect("delete"), 412).await;
    assert!(message.contains("changed since"), "{message}");
    error_of(delete("\"1".into()).await.expect("delete"), 400).await;
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), done);
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), rendered.png);
    let response = delete(tag(&done)).await.expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // A uuid created again after a delete does not repeat its old
    // revisions, which a client may still hold.
    let err = app.api.delete(&f.uuid).await.expect_err("deleted");
    assert_eq!(err.status(), Some(404));
    let again = create(
        &app,
        &NewFractal {
            uuid: Some(f.uuid.clone()),
            ..new_fractal(64, 48, None)
        },
    )
    .await;
    assert!(again.revision > done.revision, "{again:?} after {done:?}");
    let message = error_of(
        put(json!({"attempts": 1}), Some(tag(&f)))
            .await
            .expect("put"),
        412,
    )
    .await;
    assert!(message.contains("changed since"), "{message}");
    app.stop().await;
}

/// `Faafo-If-Created-At`: a render of a fractal deleted meanwhile never
/// finishes another fractal created under its uuid, whatever its size; the
/// fractal it names takes it as if it were not there.
async fn a_change_naming_its_creation_applies_only_to_that_fractal(backend: Backend) {
    use faafo_common::api_client::IF_CREATED_AT_HEADER;
    let app = spawn_app(backend).await;
    let f = create(&app, &new_fractal(64, 48, Some((-0.8, 0.156)))).await;
    let path = format!("/v1/fractal/{}", f.uuid);
    let put = |body: Value, created_at: &str| {
        app.http
            .put(app.at(&path))
            .header(IF_CREATED_AT_HEADER, created_at)
            .json(&body)
            .send()
    };
    // The fractal it names: applied (the same time written with another
    // offset names it too).
    let response = put(json!({"status": "running", "attempts": 1}), &f.created_at)
        .await
        .expect("put");
    assert_eq!(response.status(), StatusCode::OK);
    let offset = f.created_at.replace('Z', "+00:00");
    let response = put(json!({"attempts": 2}), &offset).await.expect("put");
    assert_eq!(response.status(), StatusCode::OK);
    // Malformed: 400, nothing changed.
    let before = app.api.get(&f.uuid).await.expect("get");
    for bad in ["yesterday", "2026-13-01T00:00:00Z", ""] {
        let message = error_of(put(json!({"attempts": 3}), bad).await.expect("put"), 400).await;
        assert!(message.contains(IF_CREATED_AT_HEADER), "{bad:?}: {message}");
    }
    let twice = app
        .http
        .put(app.at(&path))
        .header(IF_CREATED_AT_HEADER, &f.created_at)
        .header(IF_CREATED_AT_HEADER, &f.created_at)
        .json(&json!({"attempts": 3}))
        .send()
        .await
        .expect("put");
    let message = error_of(twice, 400).await;
    assert!(message.contains("more than once"), "{message}");
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), before);

    // Deleted and created again, of another size: the old fractal's render
    // is refused on it with 412 (not 422: it is not a bad image), by both
    // the one-request result and a plain update, and nothing changes.
    let rendered = render(&f);
    app.api.delete(&f.uuid).await.expect("deleted");
    let again = create(
        &app,
        &NewFractal {
            uuid: Some(f.uuid.clone()),
            ..new_fractal(32, 24, Some((-0.8, 0.156)))
        },
    )
    .await;
    assert_ne!(again.created_at, f.created_at);
    let err = app
        .api
        .store_result_if_created_at(
            &f.uuid,
            &f.created_at,
            rendered.png.clone(),
            &rendered.done(),
        )
        .await
        .expect_err("another fractal");
    assert!(err.is_stale(), "{err}");
    assert!(err.to_string().contains("created again"), "{err}");
    let err = app
        .api
        .update_if_created_at(&f.uuid, &f.created_at, &rendered.done())
        .await
        .expect_err("another fractal");
    assert!(err.is_stale(), "{err}");
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), again);
    // Of the same size: refused the same way (its image would fit).
    app.api.delete(&f.uuid).await.expect("deleted");
    let same_size = create(
        &app,
        &NewFractal {
            uuid: Some(f.uuid.clone()),
            ..new_fractal(64, 48, Some((0.285, 0.01)))
        },
    )
    .await;
    let err = app
        .api
        .store_result_if_created_at(
            &f.uuid,
            &f.created_at,
            rendered.png.clone(),
            &rendered.done(),
        )
        .await
        .expect_err("another fractal");
    assert!(err.is_stale(), "{err}");
    assert_eq!(app.api.get(&f.uuid).await.expect("get"), same_size);
    error_of(app.get(&format!("/fractal/{}", f.uuid)).await, 409).await;
    // Its own render, naming its own creation, is stored.
    let own = render(&same_size);
    let done = app
        .api
        .store_result_if_created_at(&f.uuid, &same_size.created_at, own.png.clone(), &own.done())
        .await
        .expect("stored");
    assert_eq!(done.status, FractalStatus::Done);
    assert_eq!(app.api.image(&f.uuid).await.expect("image"), own.png);
    app.stop().await;
}

/// Producers deliver many fractals' first images at once (new uuids sort
/// together, into the same gap of the image table's index): every delivery
/// is stored, none fails on a lock (InnoDB deadlocked on delete-then-insert).
async fn concurrent_first_images_of_many_fractals(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut fractals = Vec::new();
    for i in 0..16 {
        let f = create(&app, &new_fractal(16 + i, 16, Some((-0.8, 0.156)))).await;
        fractals.push((f.uuid.clone(), render(&f)));
    }
    for round in 0..3 {
        let tasks: Vec<_> = fractals
            .iter()
            .map(|(uuid, rendered)| {
                let (api, uuid) = (app.api.clone(), uuid.clone());
                let (png, done) = (rendered.png.clone(), rendered.done());
                tokio::spawn(async move { api.store_result(&uuid, png, &done).await })
            })
            .collect();
        for task in tasks {
            let stored = task
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("round {round}: a delivery failed: {e}"));
            assert_eq!(stored.status, FractalStatus::Done);
        }
    }
    app.stop().await;
}

/// The uuid of the young orphan of [`filesystem_image_store`].
fn young_orphan() -> &'static str {
    "01a20784-fe99-72fe-a554-0000000000aa"
}

async fn filesystem_image_store(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.api.image_store = "filesystem".into();
        // What a write cut short by a crash leaves: swept at start once
        // it is old enough not to be another server's write in progress.
        let images = std::path::Path::new(&c.default.state_path).join("images");
        std::fs::create_dir_all(&images).expect("the image directory");
        let leftover = images.join(".faafo-cut-short.tmp");
        std::fs::write(&leftover, b"half a png").expect("a leftover");
        std::fs::File::options()
            .write(true)
            .open(&leftover)
            .and_then(|f| {
                f.set_modified(std::time::SystemTime::now() - faafo_common::files::ABANDONED_AFTER)
            })
            .expect("an old leftover");
        std::fs::write(images.join(".faafo-in-progress.tmp"), b"half").expect("a recent one");
        // Image files no fractal records (a DELETE that raced an upload):
        // an old one is swept at start, a young one may be an upload in
        // progress and stays.
        let sha = "ab".repeat(32);
        let orphan = images.join(format!("{}.{sha}.png", uuid::Uuid::new_v4()));
        std::fs::write(&orphan, b"an image nobody records").expect("an orphan");
        std::fs::File::options()
            .write(true)
            .open(&orphan)
            .and_then(|f| {
                f.set_modified(std::time::SystemTime::now() - faafo_common::files::ABANDONED_AFTER)
            })
            .expect("an old orphan");
        std::fs::write(
            images.join(format!("{}.{sha}.png", young_orphan())),
            b"young",
        )
        .expect("a young orphan");
    })
    .await;
    let dir = app.state_dir.path().join("images");
    for _ in 0..100 {
        let orphans = std::fs::read_dir(&dir)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".png"))
            })
            .count();
        if orphans == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let young = dir.join(format!("{}.{}.png", young_orphan(), "ab".repeat(32)));
    assert!(
        young.exists(),
        "a young image file nobody records yet stays"
    );
    std::fs::remove_file(&young).expect("removed");
    let pngs: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".png"))
        .collect();
    assert!(
        pngs.is_empty(),
        "the old one nobody records is swept: {pngs:?}"
    );
    assert!(
        !dir.join(".faafo-cut-short.tmp").exists(),
        "a partial file of an earlier run is removed at start"
    );
    assert!(
        dir.join(".faafo-in-progress.tmp").exists(),
        "a file another server is writing is left alone"
    );
    let (done, png) = app.finished_fractal(48, 32, (-0.8, 0.156)).await;
    let file = dir.join(format!(
        "{}.{}.png",
        done.uuid,
        done.checksum.clone().expect("checksum")
    ));
    assert_eq!(std::fs::read(&file).expect("the image file"), png);
    assert_eq!(app.api.image(&done.uuid).await.expect("image"), png);
    // A file lost (a disk replaced, a hand's rm): the image delivered again
    // writes it back, and the fractal has its picture again.
    std::fs::remove_file(&file).expect("the file removed");
    assert!(app.api.image(&done.uuid).await.is_err(), "no picture now");
    app.api
        .upload_image(&done.uuid, png.clone())
        .await
        .expect("the same image again");
    assert_eq!(std::fs::read(&file).expect("the image file back"), png);
    assert_eq!(app.api.image(&done.uuid).await.expect("image"), png);
    app.api.delete(&done.uuid).await.expect("delete");
    assert!(!file.exists(), "the file goes with the fractal");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, [".faafo-in-progress.tmp"], "nothing else left aside");
    app.stop().await;
}

async fn health_readiness_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(app.api.alive().await);
    let ready: Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready, json!({"status": "ready"}));
    let (done, _) = app.finished_fractal(16, 16, (-0.8, 0.156)).await;
    create(&app, &new_fractal(8, 8, None)).await;
    let shown = app.get(&format!("/v1/fractal/{}", done.uuid)).await;
    let missing = app
        .get(&format!("/v1/fractal/{}", uuid::Uuid::new_v4()))
        .await;
    // Answers without a policy of their own are revalidated each time (a
    // shared cache in front would show old statuses, an old "ready").
    let listed = app.get("/v1/fractal").await;
    let readyz = app.get("/readyz").await;
    for (what, response) in [
        ("show", &shown),
        ("404", &missing),
        ("list", &listed),
        ("readyz", &readyz),
    ] {
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache", "{what}");
    }
    let response = app.get("/metrics").await;
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .expect("text")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    for line in [
        "faafo_api_fractals{status=\"done\"} 1",
        "faafo_api_fractals{status=\"pending\"} 1",
        "faafo_api_fractals{status=\"failed\"} 0",
        "faafo_api_http_requests_total{route=\"/v1/fractal/{uuid}\",method=\"GET\",status=\"200\"} 1",
        "faafo_api_http_requests_total{route=\"/v1/fractal/{uuid}\",method=\"GET\",status=\"404\"} 1",
        "faafo_api_http_requests_total{route=\"/v1/fractal\",method=\"POST\",status=\"201\"} 2",
        "faafo_api_http_request_duration_seconds_count{route=\"/v1/fractal/{uuid}\",method=\"GET\"} 2",
        "faafo_api_database_up 1",
        "# TYPE faafo_api_log_lines_dropped_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    // PNGs are binary strings, in and out; the seed-era routes describe
    // themselves; no rustdoc link leaks into a summary.
    let binary = serde_json::json!({"type": "string", "format": "binary"});
    for (pointer, what) in [
        (
            "/paths/~1v1~1fractal~1{uuid}~1image/put/requestBody/content/image~1png/schema",
            "the upload",
        ),
        (
            "/paths/~1fractal~1{uuid}/get/responses/200/content/image~1png/schema",
            "the download",
        ),
    ] {
        assert_eq!(doc.pointer(pointer), Some(&binary), "{what}");
    }
    let text = doc.to_string();
    assert!(!text.contains("crate::"), "a rustdoc link in the document");
    let seed_era = &doc["paths"]["/api/fractal"]["get"];
    let summary = seed_era["summary"].as_str().expect("a summary");
    assert!(
        summary.contains("/api/fractal") && !summary.contains("/v1/"),
        "{summary}"
    );
    app.stop().await;
}

async fn the_api_client_works_against_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = &app.api;
    let created = api
        .create(&new_fractal(40, 30, Some((-0.8, 0.156))))
        .await
        .expect("create");
    assert_eq!(api.get(&created.uuid).await.expect("get"), created);
    let listed = api
        .list(&ListQuery {
            status: Some(FractalStatus::Pending),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.objects, vec![created.clone()]);
    let rendered = render(&created);
    api.upload_image(&created.uuid, rendered.png.clone())
        .await
        .expect("upload");
    let done = api
        .update(&created.uuid, &rendered.done())
        .await
        .expect("done");
    assert_eq!(api.image(&created.uuid).await.expect("image"), rendered.png);
    assert_eq!(
        api.list_all(&ListQuery::default()).await.expect("all"),
        vec![done]
    );
    api.delete(&created.uuid).await.expect("delete");
    let err = api.delete(&created.uuid).await.expect_err("gone");
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_transient());
    let err = api
        .create(&NewFractal {
            width: 1,
            ..new_fractal(8, 8, None)
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.status(), Some(422));
    assert!(
        err.to_string().contains("width must be at least 2"),
        "{err}"
    );
    app.stop().await;
}

/// MariaDB refuses statements larger than its `max_allowed_packet`: an
/// image past it gets a clear 413, not a 500, and the fractal is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_images_past_max_allowed_packet_get_413() {
    let app = spawn_app_with(Backend::MySql, |c| c.api.max_body_size = 1 << 30).await;
    let admin = std::env::var("FAAFO_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("MariaDB");
    let packet: u64 = sqlx::query_scalar("SELECT @@max_allowed_packet")
        .fetch_one(&mut conn)
        .await
        .expect("packet");
    let packet = usize::try_from(packet).expect("size");
    let f = create(
        &app,
        &NewFractal {
            iterations: 16,
            ..new_fractal(4096, 4096, None)
        },
    )
    .await;
    // Just past it, and far past it: the server then gives up reading
    // the statement long before its end, which the client sees as a
    // broken connection (a 503 to be retried for ever), unless the API
    // refuses the image before sending it.
    for size in [packet + 4096, 3 * packet] {
        let err = app
            .api
            .upload_image(&f.uuid, synthetic_png(4096, 4096, size))
            .await
            .expect_err("too large");
        assert_eq!(err.status(), Some(413), "{size} bytes: {err}");
        assert!(err.to_string().contains("max_allowed_packet"), "{err}");
        assert_eq!(app.api.get(&f.uuid).await.expect("get"), f);
    }
    // The pool still works.
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.stop().await;
}

/// The first page links its script, which the API serves as JavaScript,
/// cached for good at the URL the page links and revalidated at any other;
/// every page carries the policy that lets in only that script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_script_and_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    let (done, _) = app.finished_fractal(16, 16, (-0.8, 0.156)).await;
    let index = app.get("/").await;
    assert_eq!(index.status(), StatusCode::OK);
    let policy = index.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "style-src 'sha256-",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive}: {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    let page = index.text().await.expect("page");
    let src = page
        .split("<script src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no script on the first page: {page}"))
        .to_string();
    assert!(src.starts_with("/static/live.js?v="), "{src}");
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    // Every other page: the policy, no script.
    for path in [
        "/index/1".to_string(),
        format!("/show/{}", done.uuid),
        "/index/99".into(),
        "/show/nonsense".into(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(
            response.headers()["content-security-policy"],
            policy.as_str(),
            "{path}"
        );
        let text = response.text().await.expect("page");
        // /index/1 is the first page under another name: it follows too.
        let scripts = usize::from(path == "/index/1");
        assert_eq!(text.matches("<script").count(), scripts, "{path}");
    }
    // A page's URL mistyped: a browser gets a page that links home, with
    // the same policy; an API client (and anything under /v1) JSON.
    for path in [
        "/index",
        format!("/show/{}/", done.uuid).as_str(),
        "/v1/nope",
    ] {
        let response = app
            .http
            .get(app.at(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let html = path != "/v1/nope";
        assert_eq!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with("text/html"),
            html,
            "{path}"
        );
        if html {
            assert_eq!(
                response.headers()["content-security-policy"],
                policy.as_str(),
                "{path}"
            );
            assert!(
                response.text().await.expect("page").contains("href=\"/\""),
                "{path}"
            );
        }
        let json = app.get(path).await;
        assert_eq!(json.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json.headers()[CONTENT_TYPE], "application/json", "{path}");
    }
    let script = app.get(&src).await;
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        script.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    let body = script.text().await.expect("script");
    assert!(body.contains("visibilityState"), "{body}");
    for other in ["/static/live.js", "/static/live.js?v=0000000000000000"] {
        let response = app.get(other).await;
        assert_eq!(response.status(), StatusCode::OK, "{other}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache", "{other}");
        assert_eq!(response.text().await.expect("script"), body, "{other}");
    }
    let head = app.http.head(app.at(&src)).send().await.expect("request");
    assert_eq!(head.status(), StatusCode::OK);
    app.stop().await;
}

/// The first page's "older" link keeps to what that page listed: the
/// fractals that finish afterwards do not push its entries onto the next
/// pages, where it would show some twice and skip others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_after_the_first_stay_put_while_fractals_finish() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut finished = Vec::new();
    for _ in 0..7 {
        finished.push(app.finished_fractal(8, 8, (-0.8, 0.156)).await.0.uuid);
    }
    let first = app.get("/").await.text().await.expect("page");
    let older = first
        .split("rel=\"next\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .and_then(|href| href.split('"').next())
        .unwrap_or_default()
        .replace("&amp;", "&");
    assert!(older.starts_with("/index/2?until="), "{older}: {first}");
    let shows = |text: &str| -> Vec<String> {
        finished
            .iter()
            .filter(|uuid| text.contains(&format!("/show/{uuid}")))
            .cloned()
            .collect()
    };
    let second = app.get(&older).await.text().await.expect("page");
    assert_eq!(shows(&second), finished[..2].to_vec(), "{second}");
    assert!(second.contains("page 2 of 2"), "{second}");
    // Three more finish: the same link, the same page.
    for _ in 0..3 {
        app.finished_fractal(8, 8, (-0.8, 0.156)).await;
    }
    let again = app.get(&older).await.text().await.expect("page");
    assert_eq!(shows(&again), finished[..2].to_vec(), "{again}");
    assert!(again.contains("page 2 of 2"), "{again}");
    // "Newer" leads back to the first page as it was read, not to
    // today's (whose "older" would show two of its entries again), and
    // that one is history too: no script to bring today's in.
    let newer = again
        .split("rel=\"prev\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .and_then(|href| href.split('"').next())
        .unwrap_or_default()
        .replace("&amp;", "&");
    assert!(newer.starts_with("/index/1?until="), "{newer}: {again}");
    let back = app.get(&newer).await.text().await.expect("page");
    assert_eq!(shows(&back), finished[2..].to_vec(), "{back}");
    assert!(!back.contains("live.js"), "{back}");
    assert!(first.contains("live.js"), "{first}");
    // Without the link's time, the pages have moved on.
    let moved = app.get("/index/2").await.text().await.expect("page");
    assert_eq!(shows(&moved), finished[..5].to_vec(), "{moved}");
    assert_eq!(
        app.get("/index/2?until=yesterday").await.status(),
        StatusCode::NOT_FOUND
    );
    // Other parameters (a campaign's tag) are no matter.
    assert_eq!(
        app.get("/index/2?utm_source=x").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// A fractal's page loads the script (the first page's URL of it) while
/// the fractal is pending or running, and no more once it is done or
/// failed: nothing about it will change. Deleted, it is a 404 without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractals_page_loads_the_script_until_the_fractal_is_final() {
    let app = spawn_app(Backend::Sqlite).await;
    let first = app.get("/").await.text().await.expect("page");
    let script = first
        .split("<script")
        .nth(1)
        .unwrap_or_else(|| panic!("no script on the first page: {first}"))
        .split('>')
        .next()
        .unwrap_or_default()
        .to_string();
    let page = |uuid: &str| format!("/show/{uuid}");
    let scripts = |text: &str| text.matches("<script").count();

    let f = app
        .api
        .create(&new_fractal(16, 16, Some((-0.8, 0.156))))
        .await
        .expect("create");
    let text = app.get(&page(&f.uuid)).await.text().await.expect("page");
    assert!(text.contains("pending"), "{text}");
    assert_eq!(scripts(&text), 1, "{text}");
    assert!(text.contains(&script), "{script}: {text}");
    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        attempts: Some(1),
        ..FractalUpdate::default()
    };
    app.api.update(&f.uuid, &running).await.expect("running");
    let text = app.get(&page(&f.uuid)).await.text().await.expect("page");
    assert!(text.contains("running"), "{text}");
    assert_eq!(scripts(&text), 1, "{text}");
    let rendered = render(&f);
    app.api
        .store_result(&f.uuid, rendered.png.clone(), &rendered.done())
        .await
        .expect("done");
    let text = app.get(&page(&f.uuid)).await.text().await.expect("page");
    assert!(text.contains("done"), "{text}");
    assert_eq!(scripts(&text), 0, "{text}");

    let g = app
        .api
        .create(&new_fractal(8, 8, None))
        .await
        .expect("create");
    let failed = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some("out of memory".into()),
        ..FractalUpdate::default()
    };
    app.api.update(&g.uuid, &failed).await.expect("failed");
    let text = app.get(&page(&g.uuid)).await.text().await.expect("page");
    assert!(text.contains("out of memory"), "{text}");
    assert!(!text.contains("Last error"), "{text}");
    assert_eq!(scripts(&text), 0, "{text}");
    // Put back to pending by hand: the error stays, as the last try's.
    let again = FractalUpdate {
        status: Some(FractalStatus::Pending),
        ..FractalUpdate::default()
    };
    app.api
        .update(&g.uuid, &again)
        .await
        .expect("pending again");
    let text = app.get(&page(&g.uuid)).await.text().await.expect("page");
    assert!(
        text.contains("Last error (tried again since): out of memory"),
        "{text}"
    );
    assert_eq!(scripts(&text), 1, "followed again: {text}");

    let h = app
        .api
        .create(&new_fractal(8, 8, None))
        .await
        .expect("create");
    app.api.delete(&h.uuid).await.expect("delete");
    let gone = app.get(&page(&h.uuid)).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let text = gone.text().await.expect("page");
    assert_eq!(scripts(&text), 0, "{text}");
    app.stop().await;
}

/// Every page's counts lead somewhere: done to the first page, the other
/// statuses to a list of their newest fractals with their last errors
/// (escaped): a failed fractal was out of the web page's reach unless its
/// uuid was known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_lead_to_each_status_and_its_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let failed = app
        .api
        .create(&new_fractal(8, 8, None))
        .await
        .expect("create");
    let update = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some(format!("<b>out</b> of memory & {}", "x".repeat(500))),
        ..FractalUpdate::default()
    };
    app.api.update(&failed.uuid, &update).await.expect("failed");
    let pending = app
        .api
        .create(&new_fractal(8, 8, None))
        .await
        .expect("create");

    let first = app.get("/").await.text().await.expect("page");
    for (link, text) in [
        ("/status/failed", "1 failed"),
        ("/status/pending", "1 pending"),
        ("/status/running", "0 running"),
        ("/", "0 done"),
    ] {
        assert!(
            first.contains(&format!("<a href=\"{link}\">{text}</a>")),
            "{link}: {first}"
        );
    }

    let response = app.get("/status/failed").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.expect("page");
    assert!(
        page.contains(&format!("href=\"/show/{}\"", failed.uuid)),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;out&lt;/b&gt; of memory &amp; xxx") && !page.contains("<b>out"),
        "the error, escaped: {page}"
    );
    assert!(!page.contains(&"x".repeat(300)), "cut short: {page}");
    assert!(!page.contains(&pending.uuid), "{page}");
    // It follows the news, as the first page does.
    assert_eq!(page.matches("<script").count(), 1, "{page}");

    let page = app.get("/status/pending").await.text().await.expect("page");
    assert!(
        page.contains(&format!("href=\"/show/{}\"", pending.uuid)),
        "{page}"
    );
    let page = app.get("/status/running").await.text().await.expect("page");
    assert!(page.contains("No running fractal."), "{page}");
    for path in [
        "/status/lost",
        "/status/Failed",
        "/status/",
        "/status/pending?page=0",
        "/status/pending?page=x",
        "/status/pending?page=2",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // A hundred a page, newest first; the others on the pages after.
    for _ in 0..100 {
        app.api
            .create(&new_fractal(8, 8, None))
            .await
            .expect("create");
    }
    let first = app.get("/status/pending").await.text().await.expect("page");
    assert!(first.contains("page 1 of 2"), "{first}");
    assert!(
        first.contains("href=\"/status/pending?page=2\" rel=\"next\""),
        "{first}"
    );
    assert!(
        !first.contains(&pending.uuid),
        "the oldest, on page 2: {first}"
    );
    let second = app.get("/status/pending?page=2").await;
    assert_eq!(second.status(), StatusCode::OK);
    let second = second.text().await.expect("page");
    assert!(second.contains("page 2 of 2"), "{second}");
    // History, as the index's later pages: no script to follow the news.
    assert_eq!(second.matches("<script").count(), 0, "{second}");
    assert!(
        second.contains(&format!("href=\"/show/{}\"", pending.uuid)),
        "{second}"
    );
    assert!(
        second.contains("href=\"/status/pending\" rel=\"prev\""),
        "{second}"
    );
    let past = app.get("/status/pending?page=3").await;
    assert_eq!(past.status(), StatusCode::NOT_FOUND);
    let past = past.text().await.expect("page");
    assert!(past.contains("href=\"/status/pending?page=2\""), "{past}");
    app.stop().await;
}
