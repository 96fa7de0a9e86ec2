//! Item names as MovieLens writes them: quoted titles with commas and quotes, genres optional; a
//! file that is not such a CSV is an error naming the file and line.

use serve::{ItemNames, ServeError};

#[test]
fn movielens_titles_with_commas_and_quotes_are_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("movies.csv");
    std::fs::write(
        &path,
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n11,\"American President, The (1995)\",Comedy|Drama|Romance\n12,\"\"\"Great Performances\"\" Cats (1998)\",Musical\n",
    )
    .unwrap();
    let names = ItemNames::read(&path).unwrap();
    assert_eq!(names.len(), 3);
    assert_eq!(names.title("11"), Some("American President, The (1995)"));
    assert_eq!(names.title("12"), Some("\"Great Performances\" Cats (1998)"));
    assert_eq!(names.genres("1"), Some("Adventure|Animation"));
    assert_eq!(names.title("2"), None);
}

#[test]
fn a_file_that_is_not_id_title_csv_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.txt");
    std::fs::write(&path, "just one column\n1\n").unwrap();
    let err = ItemNames::read(&path).unwrap_err();
    assert!(matches!(err, ServeError::ItemNames { .. }), "{err:?}");
    assert!(err.to_string().contains("names.txt") && err.to_string().contains("movies.csv"), "{err}");
    let missing = ItemNames::read(&dir.path().join("none.csv")).unwrap_err();
    assert!(missing.to_string().contains("none.csv"), "{missing}");
}
